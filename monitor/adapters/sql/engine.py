"""The connection every SQL repository shares: engine, sessions, schema, error translation.

SQLite file by default, PostgreSQL by URL. Every repository method is one short
transaction (:meth:`SqlEngine.run`); SQLAlchemy errors become :class:`DatabaseError` with
the redacted URL. SQL is only ever built by SQLAlchemy with bound parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from monitor.adapters.sql.tables import MIGRATIONS, SCHEMA_VERSION, SchemaVersion
from monitor.errors import DatabaseError

T = TypeVar("T")
SCHEMA_LOCK_KEY = 0x75726261  # pg_advisory_lock key of schema creation ("urba")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    # In WAL mode NORMAL still survives any crash of the program (kill -9: the fault suite);
    # only an OS crash or power cut can lose the last transactions. FULL cost an fsync per
    # commit: ~4 ms, ten commits a scene (registry marks, alerts, outbox).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def redact_database_url(url: str) -> str:
    """The URL without its password, in the userinfo or the query (for logs and
    messages): ``postgresql://user:***@host/db?password=***``."""
    from monitor.redact import redact_text

    return redact_text(url)


class SqlEngine:
    """One database: its SQLAlchemy engine, sessions and schema."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.safe_url = redact_database_url(url)
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, echo=echo, hide_parameters=True,
                                                connect_args={"check_same_thread": False,
                                                              "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            # hide_parameters: errors never quote bound values (webhook secrets, ...)
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5,
                                        max_overflow=5, hide_parameters=True)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
                session.commit()
        except IntegrityError:
            raise
        except OperationalError as exc:
            raise DatabaseError(
                f"database {self.safe_url} is unavailable: "
                f"{redact_database_url(str(exc.orig).strip())[:200]}",
                "check that the database server runs and the URL is right; work is retried",
            ) from exc
        except SQLAlchemyError as exc:
            raise DatabaseError(f"database {self.safe_url} refused an operation: "
                                f"{redact_database_url(str(exc))}"[:400],
                                "see the log for the statement") from exc

    def run(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in one transaction (committed when it returns)."""
        with self.session() as s:
            return fn(s)

    def init_schema(self) -> int:
        """Create or bring the schema forward; returns the version now in place. Safe to
        run from several processes at once: PostgreSQL serialises it with an advisory
        lock, SQLite with a lock file beside the database."""
        with self._schema_lock():
            return self._init_schema()

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        if self.is_postgres:
            try:
                conn = self.engine.connect()
            except OperationalError as exc:
                raise DatabaseError(f"database {self.safe_url} is unavailable: "
                                    f"{redact_database_url(str(exc.orig))}",
                                    "start it (bash docker/postgres.sh start) or fix the URL"
                                    ) from exc
            try:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
                conn.commit()
                yield
            finally:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
                    conn.commit()
                finally:
                    conn.close()
            return
        path = self.url.removeprefix("sqlite:///")
        if not self.url.startswith("sqlite:///") or not path or path == ":memory:":
            yield
            return
        import fcntl

        with open(f"{path}.schema-lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _init_schema(self) -> int:
        try:
            SQLModel.metadata.create_all(self.engine, tables=[SchemaVersion.__table__])  # type: ignore[attr-defined]
        except OperationalError as exc:
            raise DatabaseError(f"database {self.safe_url} is unavailable: "
                                f"{redact_database_url(str(exc.orig))}",
                                "start it (bash docker/postgres.sh start) or fix the URL") from exc
        with self.session() as s:
            row = s.get(SchemaVersion, 1)
            current = row.version if row else 0
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"database {self.safe_url} has schema version {current}, newer than this "
                f"program's {SCHEMA_VERSION}", "upgrade urban-monitor before using this database")
        if current == 0:
            SQLModel.metadata.create_all(self.engine)
        else:
            for version in range(current + 1, SCHEMA_VERSION + 1):
                with self.session() as s:
                    for statement in MIGRATIONS.get(version, []):
                        s.exec(text(statement))  # type: ignore[call-overload]
        with self.session() as s:
            row = s.get(SchemaVersion, 1) or SchemaVersion(id=1, version=SCHEMA_VERSION)
            row.version = SCHEMA_VERSION
            row.updated_at = datetime.now(UTC)
            s.add(row)
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        with self.session() as s:
            row = s.get(SchemaVersion, 1)
            return row.version if row else 0

    def dispose(self) -> None:
        self.engine.dispose()


class SqlRepository:
    """Base of the repositories: they share one :class:`SqlEngine` (one pool)."""

    def __init__(self, sql: SqlEngine) -> None:
        self.sql = sql

    def _run(self, fn: Callable[[Session], T]) -> T:
        return self.sql.run(fn)


def dialect_insert(session: Any) -> Any:
    """The session's dialect ``insert`` construct (it has ``ON CONFLICT``): PostgreSQL or
    SQLite, the two supported databases."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    inserts: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    if dialect not in inserts:  # pragma: no cover - the two supported databases
        raise DatabaseError(f"no atomic upsert for {dialect}", "use PostgreSQL or SQLite")
    return inserts[dialect]


def insert_rows(session: Any, table: Any, values: Sequence[dict[str, Any]], *,
                keys: Sequence[str], update: bool = False, keep: Sequence[str] = (),
                count: bool = False) -> int:
    """Insert rows (column -> value dicts, every row the same columns) of ``table`` in one
    executemany (batched into multi-row statements by SQLAlchemy, the statement compiled
    once); a row whose ``keys`` exist is skipped (``update=False``) or updated in place
    except the ``keep`` columns (``update=True``): ``INSERT ... ON CONFLICT`` in
    PostgreSQL and SQLite alike. With ``count``, returns how many rows were inserted (an
    ``id`` RETURNING), else the number of rows given."""
    if not values:
        return 0
    statement = dialect_insert(session)(table.__table__)
    if update:
        changed = {c: statement.excluded[c] for c in values[0] if c not in keys and c not in keep}
        statement = statement.on_conflict_do_update(index_elements=list(keys), set_=changed)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    if count:
        result = session.connection().execute(statement.returning(table.__table__.c.id),
                                               list(values))
        return len(result.all())
    session.connection().execute(statement, list(values))
    return len(values)
