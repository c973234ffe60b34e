"""The local trace store: recent spans and feedback in ``<data_dir>/traces.sqlite3``.

:class:`TraceStoreExporter` writes finished spans here (behind its own queue, like any exporter), so
``groundwork traces list|show`` and ``groundwork stats`` work without any tracing service. The store
keeps the last ``retention`` traces.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from groundwork.observability.tracing import RecordingSpan
from groundwork.stores.sqlite_db import SQLiteDatabase, run_script


def _m1_spans(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE spans (
            trace_id TEXT NOT NULL,
            span_id TEXT NOT NULL,
            parent_id TEXT,
            name TEXT NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            status TEXT NOT NULL,
            attributes TEXT NOT NULL,
            PRIMARY KEY (trace_id, span_id)
        );
        CREATE INDEX spans_roots ON spans(start_ns) WHERE parent_id IS NULL;
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            trace_id TEXT NOT NULL,
            score REAL NOT NULL,
            comment TEXT NOT NULL,
            principal TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX feedback_trace ON feedback(trace_id)
        """,
    )


def _m2_exchanges(db: sqlite3.Connection) -> None:
    # what a grounded answer said, kept with its trace so rated answers can become data
    db.execute(
        "CREATE TABLE exchanges (trace_id TEXT PRIMARY KEY, principal TEXT NOT NULL, collection TEXT,"
        " question TEXT NOT NULL, answer TEXT NOT NULL, mode TEXT NOT NULL, citations TEXT NOT NULL,"
        " created_at REAL NOT NULL)"
    )


MIGRATIONS = [_m1_spans, _m2_exchanges]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One stored span."""

    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True, slots=True)
class Feedback:
    """A score (0 bad .. 1 good) and a comment someone gave a trace."""

    trace_id: str
    score: float
    comment: str
    principal: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Stats:
    """A summary of the stored traces (``groundwork stats``)."""

    requests: int
    p50_ms: float
    p95_ms: float
    prompt_tokens: int
    completion_tokens: int
    cost: float
    cache_hits: int
    cache_lookups: int
    errors: dict[str, int]

    @property
    def cache_hit_rate(self) -> float:
        return self.cache_hits / self.cache_lookups if self.cache_lookups else 0.0


def span_row(s: RecordingSpan, trace_hex: str | None = None) -> tuple[object, ...]:
    """The stored columns of a finished span (ids as hex text, attributes as a JSON text).

    ``trace_hex`` is the span's trace id already formatted, when the caller has it. Ids are formatted
    with ``int.to_bytes`` and ``bytes.hex``: half the CPU of ``f"{id:016x}"`` (format-spec parsing).
    """
    parent = s.parent_id
    return (
        s._trace_id.to_bytes(16, "big").hex() if trace_hex is None else trace_hex,
        s._span_id.to_bytes(8, "big").hex(),
        None if parent is None else parent.to_bytes(8, "big").hex(),
        s.name,
        s.start_ns,
        s.end_ns,
        s.status,
        orjson.dumps(s.attributes).decode(),
    )


def span_values(spans: Sequence[RecordingSpan]) -> tuple[list[object], list[object]]:
    """The columns of every span as two flat lists (what multi-row ``INSERT`` s bind), in the order of
    :data:`_ROOT_COLUMNS`: the roots' as they are, the other spans' followed by their ``parent_id``.

    Roots go apart because binding ``None`` is slow in Python's ``sqlite3`` (it is not one of the
    types bound directly, so every ``None`` first goes through the adapter look-ups and two failed
    attribute look-ups: a third of the export thread's binding work for the gateway's 2-span
    traces); their ``parent_id`` is left to its default, ``NULL``. The spans of one trace usually come
    together, so a trace id is formatted once for them.
    """
    roots: list[object] = []
    children: list[object] = []
    add_root = roots.extend
    add_child = children.extend
    append_child = children.append
    dumps = orjson.dumps
    last_id = -1
    last_hex = ""
    for s in spans:
        if s._trace_id != last_id:
            last_id = s._trace_id
            last_hex = last_id.to_bytes(16, "big").hex()
        row = (
            last_hex,
            s._span_id.to_bytes(8, "big").hex(),
            s.name,
            s.start_ns,
            s.end_ns,
            s.status,
            dumps(s.attributes).decode(),
        )
        parent = s.parent_id
        if parent is None:
            add_root(row)
        else:
            add_child(row)
            append_child(parent.to_bytes(8, "big").hex())
    return roots, children


@dataclass(frozen=True, slots=True)
class Exchange:
    """A grounded answer as its caller saw it: kept with the trace for feedback exports."""

    trace_id: str
    principal: str
    collection: str | None
    question: str
    answer: str
    mode: str
    citations: tuple[str, ...] = ()
    """The cited documents' sources, in citation order."""
    created_at: float = 0.0


class TraceStorage(Protocol):
    """Where finished spans and feedback are kept: :class:`TraceStore` (SQLite) or
    :class:`~groundwork.observability.postgres_store.PostgresTraceStore` (shared by replicas).
    The conformance suite :mod:`groundwork.testing.trace_store` holds every backend to it."""

    retention: int

    def add_spans(self, spans: Sequence[RecordingSpan]) -> None:
        """Store finished spans (a span stored twice is kept once)."""
        ...

    def prune(self) -> None:
        """Keep the ``retention`` most recent traces."""
        ...

    def recent(self, limit: int = 20) -> list[SpanRecord]:
        """The root spans of the most recent traces, newest first."""
        ...

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of a trace, in start order."""
        ...

    def add_feedback(self, trace_id: str, score: float, comment: str, principal: str) -> Feedback:
        """Record feedback on a trace."""
        ...

    def feedback(self, trace_id: str) -> list[Feedback]:
        """The feedback of a trace, oldest first."""
        ...

    def stats(self, since_ns: int = 0) -> Stats:
        """A summary of the traces started since ``since_ns``."""
        ...

    def add_exchange(self, exchange: Exchange) -> None:
        """Keep what a grounded answer said with its trace."""
        ...

    def rated_exchanges(self) -> list[tuple[Exchange, Feedback]]:
        """Every kept answer that received feedback, with its latest feedback, oldest first."""
        ...

    def close(self) -> None:
        """Release the database."""
        ...


def summarize(roots: Sequence[tuple[int, dict[str, Any]]], lookups: int, hits: int) -> Stats:
    """:class:`Stats` of root spans given as (duration in ns, attributes)."""
    durations = sorted(d / 1e6 for d, _ in roots)
    errors: dict[str, int] = {}
    prompt = completion = 0
    cost = 0.0
    for _, attrs in roots:
        category = attrs.get("error.category")
        if category:
            errors[category] = errors.get(category, 0) + 1
        prompt += int(attrs.get("gen_ai.usage.input_tokens") or 0)
        completion += int(attrs.get("gen_ai.usage.output_tokens") or 0)
        cost += float(attrs.get("groundwork.cost") or 0.0)
    return Stats(
        requests=len(durations),
        p50_ms=statistics.median(durations) if durations else 0.0,
        p95_ms=durations[min(len(durations) - 1, int(0.95 * len(durations)))] if durations else 0.0,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost=cost,
        cache_hits=hits,
        cache_lookups=lookups,
        errors=errors,
    )


PRUNE_EVERY_SPANS = 25_000
"""A store prunes at its first write, then once this many spans have been stored since (the retention
is kept within about this many spans: 50 export batches of 512)."""


def prune_due(store: TraceStorage, unpruned: int, stored: int) -> int:
    """Prune ``store`` when due, after ``stored`` more spans; the spans stored since the last prune."""
    if unpruned < 0 or unpruned + stored >= PRUNE_EVERY_SPANS:
        store.prune()
        return 0
    return unpruned + stored


_ROOT_COLUMNS = ("trace_id", "span_id", "name", "start_ns", "end_ns", "status", "attributes")
_CHUNK = 32


def _inserts(columns: tuple[str, ...]) -> tuple[str, str]:
    """The ``INSERT`` of one row of ``columns``, and of ``_CHUNK`` rows."""
    row = "(" + ", ".join("?" * len(columns)) + ")"
    head = f"INSERT OR IGNORE INTO spans ({', '.join(columns)}) VALUES "
    return head + row, head + ", ".join([row] * _CHUNK)


_INSERTS = {len(c): _inserts(c) for c in (_ROOT_COLUMNS, (*_ROOT_COLUMNS, "parent_id"))}
"""By columns per row: the roots' (``parent_id`` left ``NULL``) and the other spans'."""


def _insert_rows(db: sqlite3.Connection, values: list[object], columns: int) -> None:
    """Insert the rows whose columns are ``values`` (one flat list), ``_CHUNK`` rows a statement."""
    one, chunk = _INSERTS[columns]
    width = _CHUNK * columns
    whole = len(values) - len(values) % width
    if whole:
        db.executemany(chunk, [values[i : i + width] for i in range(0, whole, width)])
    if whole < len(values):
        db.executemany(one, [values[i : i + columns] for i in range(whole, len(values), columns)])


CACHE_KIB = 2000
"""The trace store's SQLite page cache, in KiB (SQLite's default)."""


class TraceStore:
    """Spans and feedback in one SQLite file."""

    def __init__(self, path: Path, retention: int = 20_000) -> None:
        self.db = SQLiteDatabase(path, MIGRATIONS, what="trace store")
        # SQLite's default page cache (2 MiB). 16 MiB kept a full store's indexes in memory; side by side
        # at 16 concurrent requests the gateway's event loop came out 15-30 µs a request cheaper with
        # 2 MiB in two runs of three, and 14 MiB less memory in all (benchmarks/RESULTS.md, issue 7)
        self.db.connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self.retention = retention
        self._unpruned = -1  # spans stored since the last prune; -1: prune at the first write

    def add_spans(self, spans: Sequence[RecordingSpan]) -> None:
        """Store finished spans (and prune the oldest traces now and then).

        Rows go in ``_CHUNK`` at a time, one statement each: a fifth less CPU than a statement per row,
        and the export thread hands the GIL to the event loop and takes it back once per statement
        rather than once per span (``sqlite3`` releases it around every statement step).
        """
        roots, children = span_values(spans)
        n = len(spans)
        with self.db.transaction() as db:
            _insert_rows(db, roots, len(_ROOT_COLUMNS))
            _insert_rows(db, children, len(_ROOT_COLUMNS) + 1)
        self._unpruned = prune_due(self, self._unpruned, n)

    def prune(self) -> None:
        """Keep the ``retention`` most recent traces."""
        with self.db.transaction() as db:
            row = db.execute(
                "SELECT start_ns FROM spans WHERE parent_id IS NULL ORDER BY start_ns DESC LIMIT 1 OFFSET ?",
                (self.retention,),
            ).fetchone()
            if row is not None:
                db.execute(
                    "DELETE FROM spans WHERE trace_id IN (SELECT trace_id FROM spans "
                    "WHERE parent_id IS NULL AND start_ns <= ?)",
                    (row[0],),
                )

    @staticmethod
    def _record(row: Sequence[Any]) -> SpanRecord:
        return SpanRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6], orjson.loads(row[7]))

    def recent(self, limit: int = 20) -> list[SpanRecord]:
        """The root spans of the most recent traces, newest first."""
        rows = self.db.query(
            "SELECT * FROM spans WHERE parent_id IS NULL ORDER BY start_ns DESC LIMIT ?", (limit,)
        )
        return [self._record(r) for r in rows]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of a trace, in start order (empty when unknown)."""
        rows = self.db.query("SELECT * FROM spans WHERE trace_id = ? ORDER BY start_ns", (trace_id.lower(),))
        return [self._record(r) for r in rows]

    def add_feedback(self, trace_id: str, score: float, comment: str, principal: str) -> Feedback:
        fb = Feedback(trace_id.lower(), score, comment, principal, time.time())
        self.db.execute(
            "INSERT INTO feedback (trace_id, score, comment, principal, created_at) VALUES (?, ?, ?, ?, ?)",
            (fb.trace_id, fb.score, fb.comment, fb.principal, fb.created_at),
        )
        return fb

    def add_exchange(self, exchange: Exchange) -> None:
        """Keep what a grounded answer said (question, answer, cited sources) with its trace."""
        self.db.execute(
            "INSERT OR REPLACE INTO exchanges VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                exchange.trace_id.lower(),
                exchange.principal,
                exchange.collection,
                exchange.question,
                exchange.answer,
                exchange.mode,
                orjson.dumps(list(exchange.citations)).decode(),
                exchange.created_at,
            ),
        )

    def rated_exchanges(self) -> list[tuple[Exchange, Feedback]]:
        """Every answer that received feedback, with the latest feedback on it, oldest first."""
        rows = self.db.query(
            "SELECT e.trace_id, e.principal, e.collection, e.question, e.answer, e.mode, e.citations,"
            " e.created_at, f.trace_id, f.score, f.comment, f.principal, f.created_at"
            " FROM exchanges e JOIN feedback f ON f.trace_id = e.trace_id"
            " WHERE f.id = (SELECT max(id) FROM feedback g WHERE g.trace_id = e.trace_id)"
            " ORDER BY e.created_at"
        )
        return [
            (
                Exchange(r[0], r[1], r[2], r[3], r[4], r[5], tuple(orjson.loads(r[6])), r[7]),
                Feedback(r[8], r[9], r[10], r[11], r[12]),
            )
            for r in rows
        ]

    def feedback(self, trace_id: str) -> list[Feedback]:
        rows = self.db.query(
            "SELECT trace_id, score, comment, principal, created_at FROM feedback WHERE trace_id = ? "
            "ORDER BY id",
            (trace_id.lower(),),
        )
        return [Feedback(*r) for r in rows]

    def stats(self, since_ns: int = 0) -> Stats:
        """Requests, latency percentiles, tokens, cost, cache hit rate and errors since ``since_ns``."""
        roots = self.db.query(
            "SELECT end_ns - start_ns, attributes FROM spans WHERE parent_id IS NULL AND start_ns >= ?",
            (since_ns,),
        )
        durations = sorted(r[0] / 1e6 for r in roots)
        errors: dict[str, int] = {}
        for _, attrs in roots:
            category = orjson.loads(attrs).get("error.category")
            if category:
                errors[category] = errors.get(category, 0) + 1
        (prompt, completion, cost) = self.db.query(
            "SELECT COALESCE(SUM(json_extract(attributes, '$.\"gen_ai.usage.input_tokens\"')), 0), "
            "COALESCE(SUM(json_extract(attributes, '$.\"gen_ai.usage.output_tokens\"')), 0), "
            "COALESCE(SUM(json_extract(attributes, '$.\"groundwork.cost\"')), 0) "
            "FROM spans WHERE parent_id IS NULL AND start_ns >= ?",
            (since_ns,),
        )[0]
        (lookups, hits) = self.db.query(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(attributes, '$.\"cache.hit\"')), 0) "
            "FROM spans WHERE name = 'cache.lookup' AND start_ns >= ?",
            (since_ns,),
        )[0]
        return Stats(
            requests=len(durations),
            p50_ms=statistics.median(durations) if durations else 0.0,
            p95_ms=durations[min(len(durations) - 1, int(0.95 * len(durations)))] if durations else 0.0,
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cost=float(cost),
            cache_hits=int(hits),
            cache_lookups=int(lookups),
            errors=errors,
        )

    def close(self) -> None:
        self.db.close()


class TraceStoreExporter:
    """The :class:`~groundwork.observability.export.Exporter` into a :class:`TraceStorage`.

    It takes everything its queue holds in one call (``max_batch_size``), so one transaction: SQLite
    writes the pages a transaction touched to its WAL once per transaction, and the rightmost pages of
    every index are touched by every batch. In ``benchmarks/trace_store_batches.py`` batches of 4,096
    spans instead of 512 took about a tenth less CPU per trace, most of it system time.
    """

    max_batch_size = 1 << 30  # all the queue holds (its size bounds the batch)

    def __init__(self, store: TraceStorage) -> None:
        self.store = store

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        self.store.add_spans(spans)  # an error is logged and counted by the export queue
        return True

    def shutdown(self) -> None:
        return None
