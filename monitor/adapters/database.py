"""The database: every SQL repository over one connection (``Database(url)``).

The repositories live in ``monitor.adapters.sql``, one module per aggregate: the scene
registry and cities (``sql/scenes.py``), alerts (``sql/alerts.py``), subscriptions and the
delivery outbox (``sql/outbox.py``); the tables and their versioned schema in
``sql/tables.py``, the engine, sessions and error translation in ``sql/engine.py``.
:class:`Database` is all of them sharing one engine (one connection pool): a process opens
it once, and the composition root (``monitor.pipeline.runtime``) hands each pipeline step
the port it needs (``monitor.ports.SceneRegistry``, ``AlertingStore``, ...). Every method
returns domain values (``monitor.domain.records``); no ORM row leaves the adapter.

SQLite file by default, PostgreSQL by URL. SQL is only ever built by SQLAlchemy with bound
parameters.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from monitor.adapters.sql.alerts import SqlAlertRepository
from monitor.adapters.sql.engine import SqlEngine
from monitor.adapters.sql.outbox import SqlOutbox, SqlSubscriptions
from monitor.adapters.sql.scenes import SqlCityRepository, SqlSceneRegistry
from monitor.adapters.sql.tables import SCHEMA_VERSION, SchemaVersion

__all__ = ["SCHEMA_VERSION", "Database", "SchemaVersion", "SqlEngine"]


class Database(SqlSceneRegistry, SqlCityRepository, SqlAlertRepository, SqlSubscriptions,
               SqlOutbox):
    """The scene registry, cities, alerts, subscriptions and outbox of one database."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(SqlEngine(url, echo=echo))

    @property
    def url(self) -> str:
        return self.sql.url

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        return self.sql.safe_url

    @property
    def engine(self) -> Engine:
        return self.sql.engine

    @property
    def is_postgres(self) -> bool:
        return self.sql.is_postgres

    def init_schema(self) -> int:
        """Create or bring the schema forward; returns the version now in place."""
        return self.sql.init_schema()

    def schema_version(self) -> int:
        return self.sql.schema_version()

    def dispose(self) -> None:
        self.sql.dispose()
