"""Keys and the audit log of a scale-out deployment: two tables in the shared PostgreSQL database.

Every replica pointed at one database sees the same keys (a key created through one replica
authenticates on all of them) and appends to one audit log. The tables are those of the SQLite
security database (``api_keys``, ``audit_log``) with PostgreSQL types; keys are stored as the SHA-256
of the token, exactly as in SQLite. The audit log is append-only in the database: a trigger rejects
``UPDATE``, ``DELETE`` and ``TRUNCATE``. Migrations are recorded in ``groundwork_migrations`` under
subsystem ``security``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from groundwork.config import PostgresSettings
from groundwork.stores.postgres.db import Connection, Migration, PostgresDatabase, open_subsystem_database

SUBSYSTEM = "security"
POOL_MAX = 4
"""Connections at most of the security database's own pool (per replica): one key lookup per request."""


def _m1_schema(conn: Connection) -> None:
    statements = [
        """CREATE TABLE api_keys (
            prefix TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            groups TEXT NOT NULL DEFAULT '[]',
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION,
            rpm INTEGER,
            tpm INTEGER,
            max_concurrent INTEGER
        )""",
        """CREATE TABLE audit_log (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL DEFAULT 'ok',
            source TEXT NOT NULL DEFAULT '',
            request_id TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_log_ts ON audit_log (ts)",
        """CREATE FUNCTION gw_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% of %: the audit log is append-only', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
        "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION gw_audit_append_only()",
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
        " FOR EACH STATEMENT EXECUTE FUNCTION gw_audit_append_only()",
    ]
    for statement in statements:
        conn.execute(statement)


MIGRATIONS = [Migration("schema: hashed API keys, append-only audit log", _m1_schema)]


def _pg_sql(sql: str) -> str:
    """Portable ``?`` SQL as psycopg's ``%s`` SQL (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def open_security_database(settings: PostgresSettings, *, migrate: bool | None = None) -> PostgresDatabase:
    """The security tables' database: schema migrated (or checked current), pool open.

    Raises :class:`~groundwork.errors.ServiceUnavailableError` when the server is unreachable and
    :class:`~groundwork.errors.StorageError` when the schema is behind (``migrate_on_start: false``).
    """
    return open_subsystem_database(settings, MIGRATIONS, SUBSYSTEM, pool_cap=POOL_MAX, migrate=migrate)


class PostgresSecurityDatabase:
    """:class:`~groundwork.security.store.SecurityDatabase` over PostgreSQL, shared by replicas."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    @classmethod
    def open(cls, settings: PostgresSettings) -> PostgresSecurityDatabase:
        """Over a freshly opened database (see :func:`open_security_database`)."""
        return cls(open_security_database(settings))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one statement."""
        with self.db.connection() as conn:
            return conn.execute(_pg_sql(sql), tuple(params)).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; the number of rows changed."""
        with self.db.connection() as conn:
            return conn.execute(_pg_sql(sql), tuple(params)).rowcount

    def close(self) -> None:
        """Close the pool."""
        self.db.close()
