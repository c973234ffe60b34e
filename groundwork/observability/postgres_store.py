"""The trace store of a scale-out deployment: spans and feedback in the shared PostgreSQL database.

Every replica exports its spans here, so ``groundwork traces list|show``, ``groundwork stats`` and
``POST /v1/feedback`` (which checks that the trace exists) work whichever replica served a request.
Tables ``gw_spans`` (attributes as ``JSONB``) and ``gw_feedback``; migrations recorded in
``groundwork_migrations`` under subsystem ``traces``. The store keeps the last ``retention`` traces.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from groundwork.config import PostgresSettings
from groundwork.observability.store import (
    Exchange,
    Feedback,
    SpanRecord,
    Stats,
    prune_due,
    span_row,
    summarize,
)
from groundwork.observability.tracing import RecordingSpan
from groundwork.stores.postgres.db import Connection, Migration, PostgresDatabase, open_subsystem_database

SUBSYSTEM = "traces"
POOL_MAX = 3
"""Connections at most of the trace store's own pool (per replica): the exporter thread and readers."""


def _m1_schema(conn: Connection) -> None:
    for statement in (
        """CREATE TABLE gw_spans (
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            parent_id TEXT,
            name TEXT NOT NULL,
            start_ns BIGINT NOT NULL,
            end_ns BIGINT NOT NULL,
            status TEXT NOT NULL,
            attributes JSONB NOT NULL,
            PRIMARY KEY (trace_id, span_id)
        )""",
        "CREATE INDEX gw_spans_roots ON gw_spans (start_ns) WHERE parent_id IS NULL",
        "CREATE INDEX gw_spans_cache ON gw_spans (start_ns) WHERE name = 'cache.lookup'",
        """CREATE TABLE gw_feedback (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            trace_id TEXT NOT NULL,
            score DOUBLE PRECISION NOT NULL,
            comment TEXT NOT NULL,
            principal TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX gw_feedback_trace ON gw_feedback (trace_id)",
    ):
        conn.execute(statement)


def _m2_exchanges(conn: Connection) -> None:
    conn.execute(
        """CREATE TABLE gw_exchanges (
            trace_id TEXT PRIMARY KEY,
            principal TEXT NOT NULL,
            collection TEXT,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            mode TEXT NOT NULL,
            citations JSONB NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )"""
    )


MIGRATIONS = [
    Migration("schema: spans and feedback", _m1_schema),
    Migration("grounded answers kept with their traces", _m2_exchanges),
]


def open_trace_database(settings: PostgresSettings, *, migrate: bool | None = None) -> PostgresDatabase:
    """The trace store's database: schema migrated (or checked current), pool open."""
    return open_subsystem_database(settings, MIGRATIONS, SUBSYSTEM, pool_cap=POOL_MAX, migrate=migrate)


def _record(row: Sequence[Any]) -> SpanRecord:
    return SpanRecord(row[0], row[1], row[2], row[3], int(row[4]), int(row[5]), row[6], dict(row[7]))


_SPAN_COLUMNS = "trace_id, span_id, parent_id, name, start_ns, end_ns, status, attributes"


class PostgresTraceStore:
    """:class:`~groundwork.observability.store.TraceStorage` in PostgreSQL, shared by replicas."""

    def __init__(self, db: PostgresDatabase, retention: int = 20_000) -> None:
        self.db = db
        self.retention = retention
        self._unpruned = -1  # spans stored since the last prune; -1: prune at the first write

    @classmethod
    def open(cls, settings: PostgresSettings, retention: int = 20_000) -> PostgresTraceStore:
        """A store over a freshly opened database (see :func:`open_trace_database`)."""
        return cls(open_trace_database(settings), retention)

    def add_spans(self, spans: Sequence[RecordingSpan]) -> None:
        rows = [span_row(s) for s in spans]
        with self.db.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO gw_spans ({_SPAN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                " ON CONFLICT DO NOTHING",
                rows,
            )
        self._unpruned = prune_due(self, self._unpruned, len(rows))

    def prune(self) -> None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT start_ns FROM gw_spans WHERE parent_id IS NULL"
                " ORDER BY start_ns DESC LIMIT 1 OFFSET %s",
                (self.retention,),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "DELETE FROM gw_spans WHERE trace_id IN (SELECT trace_id FROM gw_spans"
                    " WHERE parent_id IS NULL AND start_ns <= %s)",
                    (row[0],),
                )

    def recent(self, limit: int = 20) -> list[SpanRecord]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_SPAN_COLUMNS} FROM gw_spans WHERE parent_id IS NULL"
                " ORDER BY start_ns DESC LIMIT %s",
                (limit,),
            ).fetchall()
        return [_record(r) for r in rows]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {_SPAN_COLUMNS} FROM gw_spans WHERE trace_id = %s ORDER BY start_ns",
                (trace_id.lower(),),
            ).fetchall()
        return [_record(r) for r in rows]

    def add_feedback(self, trace_id: str, score: float, comment: str, principal: str) -> Feedback:
        with self.db.connection() as conn:
            row = conn.execute(
                "INSERT INTO gw_feedback (trace_id, score, comment, principal, created_at)"
                " VALUES (%s, %s, %s, %s, extract(epoch FROM clock_timestamp())) RETURNING created_at",
                (trace_id.lower(), score, comment, principal),
            ).fetchone()
        assert row is not None
        return Feedback(trace_id.lower(), score, comment, principal, float(row[0]))

    def feedback(self, trace_id: str) -> list[Feedback]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT trace_id, score, comment, principal, created_at FROM gw_feedback WHERE trace_id = %s"
                " ORDER BY id",
                (trace_id.lower(),),
            ).fetchall()
        return [Feedback(*r) for r in rows]

    def stats(self, since_ns: int = 0) -> Stats:
        with self.db.connection() as conn:
            roots = conn.execute(
                "SELECT end_ns - start_ns, attributes FROM gw_spans"
                " WHERE parent_id IS NULL AND start_ns >= %s",
                (since_ns,),
            ).fetchall()
            cache = conn.execute(
                "SELECT COUNT(*),"
                " COUNT(*) FILTER (WHERE attributes->'cache.hit' IN ('true'::jsonb, '1'::jsonb))"
                " FROM gw_spans WHERE name = 'cache.lookup' AND start_ns >= %s",
                (since_ns,),
            ).fetchone()
        lookups, hits = (int(cache[0]), int(cache[1])) if cache else (0, 0)
        return summarize([(int(d), dict(a)) for d, a in roots], lookups, hits)

    def add_exchange(self, exchange: Exchange) -> None:
        e = exchange
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO gw_exchanges VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)"
                " ON CONFLICT (trace_id) DO UPDATE SET answer = EXCLUDED.answer, mode = EXCLUDED.mode,"
                " citations = EXCLUDED.citations",
                (
                    e.trace_id.lower(),
                    e.principal,
                    e.collection,
                    e.question,
                    e.answer,
                    e.mode,
                    json.dumps(list(e.citations)),
                    e.created_at,
                ),
            )

    def rated_exchanges(self) -> list[tuple[Exchange, Feedback]]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT e.trace_id, e.principal, e.collection, e.question, e.answer, e.mode, e.citations,"
                " e.created_at, f.trace_id, f.score, f.comment, f.principal, f.created_at"
                " FROM gw_exchanges e JOIN LATERAL (SELECT * FROM gw_feedback g WHERE g.trace_id = e.trace_id"
                " ORDER BY g.id DESC LIMIT 1) f ON true ORDER BY e.created_at"
            ).fetchall()
        return [
            (
                Exchange(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), float(r[7])),
                Feedback(r[8], float(r[9]), r[10], r[11], float(r[12])),
            )
            for r in rows
        ]

    def close(self) -> None:
        self.db.close()
