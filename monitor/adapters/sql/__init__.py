"""SQL repositories (sqlmodel/SQLAlchemy), one module per aggregate; see
``monitor.adapters.database`` for the whole database over one engine."""
