"""One PostgreSQL database behind a connection pool, with versioned migrations recorded in a table.

The server counterpart of :class:`~groundwork.stores.sqlite_db.SQLiteDatabase`: each subsystem
(documents, and later prompts, keys, traces) passes its own ordered list of migration functions and a
``subsystem`` name; the versions applied are rows of ``groundwork_migrations``. Migrations run under a
transaction-scoped advisory lock, so replicas starting together apply each one exactly once.

Failures to connect are translated here into :class:`~groundwork.errors.ServiceUnavailableError` naming
the server (never the password) and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from groundwork.config import PostgresSettings
from groundwork.errors import ServiceUnavailableError, StorageError

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``apply(conn)`` runs inside the migration's transaction."""

    name: str
    apply: Callable[[Connection], None]


MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS groundwork_migrations (
    subsystem TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subsystem, version)
)
"""


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (the password never appears)."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or 'postgres'}"


def connect_error(dsn: str, exc: BaseException) -> ServiceUnavailableError:
    """The error for a server that cannot be reached, naming it and the fix."""
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ServiceUnavailableError(
        f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {first_line}. Start the server or fix "
        "storage.postgres.dsn (env GROUNDWORK_STORAGE__POSTGRES__DSN), or use storage.backend: embedded",
        details={"service": "postgres", "server": describe_dsn(dsn)},
    )


class PostgresDatabase:
    """A pool of connections to one database, migrated for ``subsystem`` on open (unless told not to).

    ``configure`` runs on every new connection of the pool (e.g. to register the pgvector types), after
    ``prepare`` has run once on a plain connection (e.g. to check and create extensions).
    """

    def __init__(
        self,
        dsn: str,
        migrations: Sequence[Migration],
        *,
        subsystem: str,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout_s: float = 5.0,
        migrate: bool = True,
        prepare: Callable[[Connection], None] | None = None,
        configure: Callable[[Connection], None] | None = None,
    ) -> None:
        self.dsn = dsn
        self.subsystem = subsystem
        self.migrations = list(migrations)
        self.connect_timeout_s = connect_timeout_s
        self.applied: list[str] = []
        """The migrations this instance applied when it opened (``"1: schema"``)."""
        with self.direct() as conn:
            if prepare is not None:
                prepare(conn)
            if migrate:
                self.applied = self._migrate(conn)
            else:
                self._check_current(conn)
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            min_size=min(pool_min, pool_max),
            max_size=pool_max,
            kwargs={"connect_timeout": max(1, round(connect_timeout_s))},
            configure=configure,
            check=ConnectionPool.check_connection,  # a server restart must not fail the next request
            timeout=connect_timeout_s * 6,
            open=False,
            name=f"groundwork-{subsystem}",
        )
        try:
            self.pool.open(wait=pool_min > 0, timeout=connect_timeout_s * 2)
        except PoolTimeout as exc:
            self.pool.close()
            raise connect_error(dsn, exc) from exc

    @contextmanager
    def direct(self) -> Iterator[Connection]:
        """A plain connection outside the pool (start-up checks, migrations)."""
        try:
            conn = psycopg.connect(self.dsn, connect_timeout=max(1, round(self.connect_timeout_s)))
        except psycopg.OperationalError as exc:
            raise connect_error(self.dsn, exc) from exc
        try:
            yield conn
        finally:
            conn.close()

    # -- migrations ---------------------------------------------------------------------------------

    def applied_version(self, conn: Connection) -> int:
        """How many of this subsystem's migrations the database has (0 before the first)."""
        exists = conn.execute("SELECT to_regclass('groundwork_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM groundwork_migrations WHERE subsystem = %s",
            (self.subsystem,),
        ).fetchone()
        return int(row[0]) if row else 0

    def _check_version(self, version: int) -> None:
        if version > len(self.migrations):
            raise StorageError(
                f"the {self.subsystem} schema in PostgreSQL {describe_dsn(self.dsn)} is at version {version},"
                f" newer than this Groundwork knows ({len(self.migrations)}); upgrade Groundwork"
            )

    def _check_current(self, conn: Connection) -> None:
        version = self.applied_version(conn)
        self._check_version(version)
        if version < len(self.migrations):
            raise StorageError(
                f"the {self.subsystem} schema in PostgreSQL {describe_dsn(self.dsn)} is at version {version}"
                f" of {len(self.migrations)}: run `groundwork migrate` (or set"
                " storage.postgres.migrate_on_start: true)"
            )

    def _migrate(self, conn: Connection) -> list[str]:
        applied: list[str] = []
        with conn.transaction():
            # one migrator at a time across replicas; the lock ends with the transaction
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('groundwork_migrations'))")
            conn.execute(MIGRATIONS_TABLE)
            version = self.applied_version(conn)
            self._check_version(version)
            for number, migration in enumerate(self.migrations[version:], start=version + 1):
                migration.apply(conn)
                conn.execute(
                    "INSERT INTO groundwork_migrations (subsystem, version, name) VALUES (%s, %s, %s)",
                    (self.subsystem, number, migration.name),
                )
                applied.append(f"{number}: {migration.name}")
        return applied

    def migrate(self) -> list[str]:
        """Apply pending migrations now; returns the ones applied (``"3: add_tags"``)."""
        with self.direct() as conn:
            return self._migrate(conn)

    def pending(self) -> list[str]:
        """The migrations not applied yet."""
        with self.direct() as conn:
            version = self.applied_version(conn)
        self._check_version(version)
        return [f"{n}: {m.name}" for n, m in enumerate(self.migrations[version:], start=version + 1)]

    # -- use ----------------------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection in a transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise connect_error(self.dsn, exc) from exc
        except psycopg.OperationalError as exc:  # the server went away, or cancelled the statement
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ServiceUnavailableError(
                f"PostgreSQL at {describe_dsn(self.dsn)} failed: {first_line}",
                details={"service": "postgres", "server": describe_dsn(self.dsn)},
            ) from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()


def open_subsystem_database(
    settings: PostgresSettings,
    migrations: Sequence[Migration],
    subsystem: str,
    *,
    pool_cap: int,
    pool_floor: int = 1,
    migrate: bool | None = None,
) -> PostgresDatabase:
    """The database of a subsystem that keeps its own small pool (at most ``pool_cap`` connections, at
    least ``pool_floor``): schema migrated (or checked current, ``migrate_on_start``), pool open."""
    return PostgresDatabase(
        settings.dsn,
        migrations,
        subsystem=subsystem,
        pool_min=min(settings.pool_min, pool_cap),
        pool_max=max(pool_floor, min(settings.pool_max, pool_cap)),
        connect_timeout_s=settings.connect_timeout_s,
        migrate=settings.migrate_on_start if migrate is None else migrate,
    )
