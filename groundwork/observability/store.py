"""The local trace store: recent spans and feedback in ``<data_dir>/traces.sqlite3``.

:class:`TraceStoreExporter` writes finished spans here (behind its own queue, like any exporter), so
``groundwork traces list|show`` and ``groundwork stats`` work without any tracing service. The store
keeps the last ``retention`` traces.

Spans are written the way they arrive: one row per export batch (:data:`SPAN_BATCHES`), its spans as
one JSON array, with what reading needs (the smallest and largest trace id, the trace id of every
span, the latest start, how many roots). A span as a row of its own cost the export thread three to
four times as much CPU (two indexes of text ids updated per span, a JSON text per span): on a gateway
answering thousands of requests a second that was the largest part of tracing's cost. Reading pays
instead, and reading is rare: ``traces show`` and feedback decode only the batches whose id range
takes the trace in and whose ids hold it (trace ids start with their root's Unix time,
:func:`~groundwork.observability.tracing.new_trace_id`, so batches written far apart do not overlap);
``traces list`` decodes the newest batches; ``stats`` decodes the period it covers.

A batch's JSON is stored compressed (Zstandard, level 1): a tenth of the bytes for SQLite to write to
its WAL, copy into the database at checkpoints and walk again when a prune deletes the batch. On a
gateway at full load the writing, not the JSON, was most of the store's cost, and much of it landed on
the event loop's thread as well (``benchmarks/RESULTS.md``, issue 7). Zstandard compresses this JSON in
about a quarter of the CPU time of zlib at its fastest level, to a smaller size. Rows written before
are read as they are: zlib-compressed, or plain JSON.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

import orjson
import zstandard

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


def _m3_span_batches(db: sqlite3.Connection) -> None:
    # spans kept a batch to a row (the module's docstring); the rows of the old table move over
    db.execute(SPAN_BATCHES)
    # a trace is looked up by the bounds alone, in the index: no batch row is read but those that may hold it
    db.execute("CREATE INDEX span_batches_traces ON span_batches(last_trace, first_trace)")
    cursor = db.execute(
        "SELECT trace_id, span_id, parent_id, name, start_ns, end_ns, status, attributes FROM spans "
        "ORDER BY end_ns"
    )
    while rows := cursor.fetchmany(4096):
        _insert_batch(
            db,
            [
                (t, int(s, 16), int(p, 16) if p else 0, name, start, end, status, orjson.loads(attrs))
                for t, s, p, name, start, end, status, attrs in rows
            ],
        )
    db.execute("DROP TABLE spans")


SPAN_BATCHES = """CREATE TABLE span_batches (
    id INTEGER PRIMARY KEY,
    first_trace TEXT NOT NULL,
    last_trace TEXT NOT NULL,
    max_start_ns INTEGER NOT NULL,
    roots INTEGER NOT NULL,
    trace_ids TEXT NOT NULL,
    spans BLOB NOT NULL
)"""
"""One export batch a row. ``spans``: a JSON array of ``[trace id (32 hex digits), span id, parent id
(0 for a root), name, start ns, end ns, status, attributes]``, Zstandard-compressed
(:func:`decode_batch`; rows written by earlier versions hold it zlib-compressed or as it is);
``first_trace`` and ``last_trace``: the smallest and largest trace id among them (the rows a trace can
be in); ``max_start_ns``: its latest span start; ``roots``: its root spans; ``trace_ids``: the trace ids
of its spans, each once, end to end (what a lookup searches; rows written before hold one per span)."""


# every Zstandard frame starts with these 4 bytes; zlib's output with 0x78, the JSON with "["
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def encode_batch(rows: Sequence[Sequence[Any]]) -> bytes:
    """A ``span_batches.spans`` value: the rows as JSON, Zstandard-compressed (level 1).

    A compressor a call (about 5 µs to make, against hundreds of µs to compress a batch): one is not
    safe to share between threads, and stores are written from more than one (the export thread; a
    migration, on the thread that opens the store).
    """
    return zstandard.ZstdCompressor(level=1).compress(orjson.dumps(rows))


def decode_batch(data: bytes) -> list[list[Any]]:
    """The rows of a ``span_batches.spans`` value: Zstandard-compressed JSON, or (older rows)
    zlib-compressed or plain JSON."""
    if data[:4] == _ZSTD_MAGIC:
        raw = zstandard.decompress(data)
    elif data[:1] == b"[":
        raw = data
    else:
        raw = zlib.decompress(data)
    rows: list[list[Any]] = orjson.loads(raw)
    return rows


MIGRATIONS = [_m1_spans, _m2_exchanges, _m3_span_batches]


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


def span_row(s: RecordingSpan) -> tuple[object, ...]:
    """A finished span as a row of its own (ids as hex text, attributes as a JSON text): the PostgreSQL
    store's form. Ids are formatted with ``int.to_bytes`` and ``bytes.hex``: half the CPU of
    ``f"{id:016x}"`` (format-spec parsing).
    """
    parent = s.parent_id
    return (
        s.trace_id.to_bytes(16, "big").hex(),
        s.span_id.to_bytes(8, "big").hex(),
        None if parent is None else parent.to_bytes(8, "big").hex(),
        s.name,
        s.start_ns,
        s.end_ns,
        s.status,
        orjson.dumps(s.attributes).decode(),
    )


def batch_rows(spans: Sequence[RecordingSpan]) -> list[tuple[object, ...]]:
    """The stored form of every span of an export batch (:data:`SPAN_BATCHES`'s ``spans``).

    The spans of one trace usually come together, so a trace id is formatted once for them; span ids
    stay integers (0: no parent) and the attributes dicts go in as they are, made JSON with the rest.
    """
    rows: list[tuple[object, ...]] = []
    append = rows.append
    last_id = -1
    last_hex = ""
    for s in spans:
        if s.trace_id != last_id:
            last_id = s.trace_id
            last_hex = last_id.to_bytes(16, "big").hex()
        append((last_hex, s.span_id, s.parent_id or 0, s.name, s.start_ns, s.end_ns, s.status, s.attributes))
    return rows


def _insert_batch(db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Store the :func:`batch_rows` of a batch as one row of ``span_batches``, with its bounds.

    The bounds are found by C loops (``map`` with ``itemgetter``): generator expressions over the rows
    cost the export thread a fifth of its work. Ids of equal length order as their numbers do.
    """
    trace_ids = dict.fromkeys(map(_TRACE_ID, rows))  # each once, in order (a trace's spans come together)
    db.execute(
        "INSERT INTO span_batches (first_trace, last_trace, max_start_ns, roots, trace_ids, spans)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            min(trace_ids),
            max(trace_ids),
            max(map(_START, rows)),
            list(map(_PARENT, rows)).count(0),
            "".join(trace_ids),
            encode_batch(rows),
        ),
    )


_TRACE_ID, _PARENT, _START = itemgetter(0), itemgetter(2), itemgetter(4)


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
        """Store finished spans, the batch as one row (and prune the oldest traces now and then)."""
        if not spans:
            return
        rows = batch_rows(spans)
        with self.db.transaction() as db:
            _insert_batch(db, rows)
        self._unpruned = prune_due(self, self._unpruned, len(spans))

    def prune(self) -> None:
        """Keep the ``retention`` most recent traces: the newest batches holding that many roots.

        Whole batches go, so a trace whose children were exported in an older batch than its root
        (the batch before the cut) may lose those children when it is the oldest one kept.
        """
        with self.db.transaction() as db:
            kept = 0
            for batch_id, roots in db.execute("SELECT id, roots FROM span_batches ORDER BY id DESC"):
                kept += roots
                if kept >= self.retention:
                    db.execute("DELETE FROM span_batches WHERE id < ?", (batch_id,))
                    return

    @staticmethod
    def _record(row: Sequence[Any]) -> SpanRecord:
        trace_hex, span_id, parent, name, start, end, status, attributes = row
        return SpanRecord(
            trace_hex,
            span_id.to_bytes(8, "big").hex(),
            parent.to_bytes(8, "big").hex() if parent else None,
            name,
            start,
            end,
            status,
            attributes,
        )

    def _batches(self, sql: str, params: Sequence[Any] = ()) -> Iterator[list[list[Any]]]:
        """The decoded ``spans`` of the ``span_batches`` rows that ``sql`` selects (one column)."""
        for (data,) in self.db.query(sql, params):
            yield decode_batch(data)

    def recent(self, limit: int = 20) -> list[SpanRecord]:
        """The root spans of the most recent traces, newest first.

        Batches are read newest first until ``limit`` roots are found and no older batch can hold a
        root started later than the last of them.
        """
        roots: dict[tuple[str, int], list[Any]] = {}
        cutoff = -1  # the start of the limit-th newest root found so far
        with self.db.lock:
            batches = self.db.connection.execute(
                "SELECT max_start_ns, spans FROM span_batches WHERE roots > 0 ORDER BY id DESC"
            )
            for max_start, data in batches:  # read lazily: usually the newest batch or few are enough
                if max_start < cutoff:
                    break
                for row in decode_batch(data):
                    if not row[2]:
                        roots.setdefault((row[0], row[1]), row)
                if len(roots) >= limit:
                    cutoff = sorted(r[4] for r in roots.values())[-limit]
        newest = sorted(roots.values(), key=lambda r: r[4], reverse=True)[:limit]
        return [self._record(r) for r in newest]

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every stored span of a trace, in start order (empty when unknown).

        Only the batches whose trace-id bounds take it in are read, and of those only the ones that
        hold it: at high traffic a handful of batches, at low traffic usually one.
        """
        trace_hex = trace_id.lower()
        spans: dict[int, list[Any]] = {}
        for rows in self._batches(
            "SELECT spans FROM span_batches WHERE last_trace >= ?1 AND first_trace <= ?1"
            " AND instr(trace_ids, ?1)",
            (trace_hex,),
        ):
            for row in rows:
                if row[0] == trace_hex:
                    spans.setdefault(row[1], row)
        return [self._record(r) for r in sorted(spans.values(), key=lambda r: r[4])]

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
        roots: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
        lookups: dict[tuple[str, int], bool] = {}
        for rows in self._batches("SELECT spans FROM span_batches WHERE max_start_ns >= ?", (since_ns,)):
            for trace_hex, span_id, parent, name, start, end, _, attributes in rows:
                if start < since_ns:
                    continue
                if not parent:
                    roots[trace_hex, span_id] = (end - start, attributes)
                if name == "cache.lookup":
                    lookups[trace_hex, span_id] = bool(attributes.get("cache.hit"))
        return summarize(list(roots.values()), len(lookups), sum(lookups.values()))

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
