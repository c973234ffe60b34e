"""The prompt store of a scale-out deployment: four tables in the shared PostgreSQL database.

It reuses :class:`~groundwork.stores.postgres.db.PostgresDatabase` (pool, migrations recorded in
``groundwork_migrations`` under subsystem ``prompts``, connection errors as
:class:`~groundwork.errors.ServiceUnavailableError`). It needs no extension, so pgvector is not checked.

The guarantees are those of :class:`~groundwork.prompts.sqlite_store.SQLitePromptStore`, for several
replicas at once:

* versions are immutable in the database: a trigger rejects ``UPDATE``, ``DELETE`` and ``TRUNCATE`` of
  ``gw_prompt_versions`` (and of the label history ``gw_prompt_label_events``);
* version numbers come from a per-name counter row (``gw_prompt_names.last_version``) bumped by one
  ``INSERT ... ON CONFLICT DO UPDATE``, which holds that row's lock until the transaction ends, so two
  replicas appending to one prompt get consecutive numbers; ``(name, version)`` is also the primary key;
* a label move locks the same counter row, so the recorded ``previous`` version is always the one the
  move replaced, and the label and its history row are written in one transaction;
* :meth:`PostgresPromptStore.exclusive` lets replicas starting together seed the built-in prompts one
  at a time, so a prompt is seeded once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg.types.json import Json

from groundwork.config import PostgresSettings
from groundwork.errors import NotFoundError
from groundwork.prompts.store import LabelEvent, PromptVersion
from groundwork.prompts.template import PromptTemplate
from groundwork.stores.postgres.db import Connection, Migration, PostgresDatabase, open_subsystem_database

SUBSYSTEM = "prompts"
POOL_MAX = 4
"""Connections at most of the prompt store's own pool (per replica): a few small queries per answer."""


def _m1_schema(conn: Connection) -> None:
    statements = [
        """CREATE TABLE gw_prompt_names (
            name TEXT PRIMARY KEY,
            last_version INTEGER NOT NULL CHECK (last_version > 0)
        )""",
        """CREATE TABLE gw_prompt_versions (
            name TEXT NOT NULL REFERENCES gw_prompt_names (name),
            version INTEGER NOT NULL CHECK (version > 0),
            template JSON NOT NULL,
            content_hash TEXT NOT NULL,
            author TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (name, version)
        )""",
        """CREATE TABLE gw_prompt_labels (
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (name, label),
            FOREIGN KEY (name, version) REFERENCES gw_prompt_versions (name, version)
        )""",
        """CREATE TABLE gw_prompt_label_events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER NOT NULL,
            previous INTEGER,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            FOREIGN KEY (name, version) REFERENCES gw_prompt_versions (name, version)
        )""",
        "CREATE INDEX gw_prompt_label_events_by_name ON gw_prompt_label_events (name, label, id)",
        """CREATE FUNCTION gw_prompt_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% of %: prompt versions and label history are immutable', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
    ]
    for table in ("gw_prompt_versions", "gw_prompt_label_events"):
        statements += [
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION gw_prompt_immutable()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION gw_prompt_immutable()",
        ]
    for statement in statements:
        conn.execute(statement)


MIGRATIONS = [Migration("schema: prompt names, immutable versions, labels, label history", _m1_schema)]

_COLUMNS = "name, version, template, content_hash, author, message, created_at"
_EVENT_COLUMNS = "name, label, version, previous, actor, reason, at"


def _version(row: Sequence[Any]) -> PromptVersion:
    name, version, template, content_hash, author, message, created_at = row
    return PromptVersion(
        name, int(version), PromptTemplate.from_dict(template), content_hash, author, message, created_at
    )


def open_prompt_database(settings: PostgresSettings, *, migrate: bool | None = None) -> PostgresDatabase:
    """The prompt store's database: schema migrated (or checked current), pool open.

    Raises :class:`~groundwork.errors.ServiceUnavailableError` when the server is unreachable and
    :class:`~groundwork.errors.StorageError` when the schema is behind (``migrate_on_start: false``) or
    newer than this Groundwork.
    """
    return open_subsystem_database(
        settings,
        MIGRATIONS,
        SUBSYSTEM,
        pool_cap=POOL_MAX,
        pool_floor=2,
        migrate=migrate,  # 2: `exclusive` holds one
    )


class PostgresPromptStore:
    """:class:`~groundwork.prompts.store.PromptStore` in PostgreSQL, safe for several replicas."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    @classmethod
    def open(cls, settings: PostgresSettings) -> PostgresPromptStore:
        """A store over a freshly opened database (see :func:`open_prompt_database`)."""
        return cls(open_prompt_database(settings))

    def append(
        self, name: str, template: PromptTemplate, author: str, message: str, at: float
    ) -> PromptVersion:
        payload = Json(template.to_dict(), dumps=lambda o: json.dumps(o, ensure_ascii=False))
        with self.db.connection() as conn, conn.transaction():
            # the counter row stays locked until commit: a concurrent append waits, then takes the next
            row = conn.execute(
                "INSERT INTO gw_prompt_names (name, last_version) VALUES (%s, 1) ON CONFLICT (name)"
                " DO UPDATE SET last_version = gw_prompt_names.last_version + 1 RETURNING last_version",
                (name,),
            ).fetchone()
            assert row is not None
            version = PromptVersion(name, int(row[0]), template, template.content_hash, author, message, at)
            conn.execute(
                f"INSERT INTO gw_prompt_versions ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (name, version.version, payload, version.content_hash, author, message, at),
            )
        return version

    def get(self, name: str, version: int) -> PromptVersion | None:
        with self.db.connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM gw_prompt_versions WHERE name = %s AND version = %s", (name, version)
            ).fetchone()
        return _version(row) if row else None

    def versions(self, name: str) -> Sequence[PromptVersion]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM gw_prompt_versions WHERE name = %s ORDER BY version", (name,)
            ).fetchall()
        return [_version(r) for r in rows]

    def names(self) -> Sequence[str]:
        with self.db.connection() as conn:
            rows = conn.execute('SELECT name FROM gw_prompt_names ORDER BY name COLLATE "C"').fetchall()
        return [str(r[0]) for r in rows]

    def set_label(
        self, name: str, label: str, version: int, actor: str, reason: str, at: float
    ) -> LabelEvent:
        with self.db.connection() as conn, conn.transaction():
            # one move of this prompt's labels at a time: `previous` is the version this move replaces
            last = conn.execute(
                "SELECT last_version FROM gw_prompt_names WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if last is None or not 1 <= version <= int(last[0]):
                raise NotFoundError(f"prompt {name!r} has no version {version}")
            row = conn.execute(
                "SELECT version FROM gw_prompt_labels WHERE name = %s AND label = %s", (name, label)
            ).fetchone()
            previous = None if row is None else int(row[0])
            conn.execute(
                "INSERT INTO gw_prompt_labels (name, label, version) VALUES (%s, %s, %s)"
                " ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
                (name, label, version),
            )
            conn.execute(
                f"INSERT INTO gw_prompt_label_events ({_EVENT_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (name, label, version, previous, actor, reason, at),
            )
        return LabelEvent(name, label, version, previous, actor, reason, at)

    def labels(self, name: str) -> dict[str, int]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT label, version FROM gw_prompt_labels WHERE name = %s ORDER BY label", (name,)
            ).fetchall()
        return {str(label): int(version) for label, version in rows}

    def label_events(self, name: str, label: str | None = None) -> Sequence[LabelEvent]:
        query = f"SELECT {_EVENT_COLUMNS} FROM gw_prompt_label_events WHERE name = %s"
        params: tuple[str, ...] = (name,)
        if label is not None:
            query += " AND label = %s"
            params = (name, label)
        with self.db.connection() as conn:
            rows = conn.execute(query + " ORDER BY id", params).fetchall()
        return [LabelEvent(*row) for row in rows]

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the registry's advisory lock for the block: one replica at a time checks-then-writes.

        The container seeds the built-in prompts inside it, so two replicas starting on an empty
        database do not both create version 1 and 2 of the same built-in prompt.
        """
        with self.db.connection() as conn:  # the lock lasts until this connection's transaction ends
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('gw_prompt_registry', 0))")
            yield

    def close(self) -> None:
        self.db.close()
