from services.api.app import main

raise SystemExit(main())
