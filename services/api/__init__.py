"""The HTTP API (FastAPI), one router per concern; see :mod:`services.api.app`.

    python -m services.api [--config FILE]        # uvicorn on api.host:api.port
"""

from services.api.app import create_app, main
from services.api.security import require_key

__all__ = ["create_app", "main", "require_key"]
