"""The trace store conformance suite on SQLite and on PostgreSQL."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import zstandard

from groundwork.config import PostgresSettings
from groundwork.observability.postgres_store import PostgresTraceStore
from groundwork.observability.store import TraceStorage, TraceStore, decode_batch
from groundwork.testing.trace_store import TraceStoreConformance


class TestSQLiteTraceStore(TraceStoreConformance):
    @pytest.fixture
    def trace_store(self, tmp_path: Path) -> Iterator[TraceStorage]:
        store = TraceStore(tmp_path / "traces.sqlite3")
        yield store
        store.close()


def test_the_sqlite_trace_store_keeps_a_small_page_cache(tmp_path: Path) -> None:
    # 2 MiB, SQLite's default: a 16 MiB cache cost the gateway's event loop CPU (benchmarks/RESULTS.md)
    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        (size,) = store.db.connection.execute("PRAGMA cache_size").fetchone()
        assert -4096 <= size < 0  # in KiB: at most 4 MiB
    finally:
        store.close()


@pytest.mark.integration
class TestPostgresTraceStore(TraceStoreConformance):
    @pytest.fixture
    def trace_store(self, pg_dsn: str) -> Iterator[TraceStorage]:
        store = PostgresTraceStore.open(PostgresSettings(dsn=pg_dsn, pool_min=1, pool_max=3))
        yield store
        store.close()


@pytest.mark.integration
def test_the_postgres_trace_schema_is_a_recorded_migration(pg_dsn: str) -> None:
    PostgresTraceStore.open(PostgresSettings(dsn=pg_dsn)).close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT subsystem, version FROM groundwork_migrations").fetchall() == [
            ("traces", 1),
            ("traces", 2),
        ]


@pytest.mark.integration
def test_traces_and_stats_commands_read_the_shared_postgres_store(tmp_path: Path, pg_dsn: str) -> None:
    from typer.testing import CliRunner

    from groundwork.cli.main import app
    from groundwork.testing.trace_store import make_spans

    store = PostgresTraceStore.open(PostgresSettings(dsn=pg_dsn))
    spans = make_spans(2, hit=True)
    store.add_spans(spans)
    store.close()
    config = tmp_path / "groundwork.yaml"
    config.write_text(f"storage: {{backend: postgres, postgres: {{dsn: '{pg_dsn}'}}}}\n")
    args = ["--config", str(config), "--data-dir", str(tmp_path / "elsewhere")]
    listed = CliRunner().invoke(app, ["traces", "list", *args])
    assert listed.exit_code == 0, listed.output
    trace_ids = {f"{s.trace_id:032x}" for s in spans}
    assert all(t in listed.output for t in trace_ids)
    stats = CliRunner().invoke(app, ["stats", *args])
    assert stats.exit_code == 0, stats.output
    assert "100.0% of 2 lookups" in stats.output


def test_the_store_prunes_at_the_first_write_then_every_so_many_spans(tmp_path: Path) -> None:
    from groundwork.observability import store as store_module
    from groundwork.observability.tracing import Tracing

    store = TraceStore(tmp_path / "traces.sqlite3", retention=1)
    pruned: list[int] = []
    store.prune = lambda: pruned.append(1)  # type: ignore[method-assign]
    tracing = Tracing("t", {})
    roots = [tracing.root(f"r{i}") for i in range(store_module.PRUNE_EVERY_SPANS + 10)]
    for r in roots:
        r.end_ns = r.start_ns + 1
    try:
        store.add_spans(roots[:10])
        assert len(pruned) == 1  # the first write
        store.add_spans(roots[10 : store_module.PRUNE_EVERY_SPANS])
        assert len(pruned) == 1  # 24,990 spans since: not yet
        store.add_spans(roots[store_module.PRUNE_EVERY_SPANS :])
        assert len(pruned) == 2  # 25,000
    finally:
        tracing.shutdown(1)
        store.close()


def test_the_sqlite_store_keeps_ids_as_padded_hex_and_roots_without_a_parent(tmp_path: Path) -> None:
    from groundwork.observability.tracing import RecordingSpan, Tracing

    tracing = Tracing("t", {})
    root = RecordingSpan(tracing, "root", 1, None, {"n": 1}, "server")  # small ids: leading zeros
    child = RecordingSpan(tracing, "child", 1, root, {"big": 2**64 - 1})
    other = tracing.root("other")  # a random id, its trace apart
    for s in (child, root, other):
        s.end_ns = s.start_ns + 1
    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        store.add_spans([child, root, other])
        stored = store.trace("0" * 31 + "1")
        assert [s.name for s in stored] == ["root", "child"]
        assert stored[0].trace_id == "00000000000000000000000000000001"
        assert stored[0].span_id == f"{root.span_id:016x}" and stored[0].parent_id is None
        assert stored[1].parent_id == stored[0].span_id and stored[1].span_id == f"{child.span_id:016x}"
        assert stored[1].attributes == {"big": 2**64 - 1}
        [listed] = [r for r in store.recent(5) if r.name == "other"]
        assert listed.trace_id == f"{other.trace_id:032x}" and listed.parent_id is None
    finally:
        tracing.shutdown(1)
        store.close()


def test_the_sqlite_store_writes_an_export_batch_as_one_row(tmp_path: Path) -> None:
    from groundwork.testing.trace_store import make_spans

    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        store.add_spans(make_spans(30))
        store.add_spans(make_spans(5))
        store.add_spans([])
        rows = store.db.query("SELECT roots, trace_ids, spans FROM span_batches ORDER BY id")
        assert [(roots, len(ids) // 32, len(decode_batch(data))) for roots, ids, data in rows] == [
            (30, 30, 60),  # each trace id once, every span
            (5, 5, 10),
        ]
        # Zstandard frames, a fraction of the JSON's size
        assert all(
            data[:4] == b"\x28\xb5\x2f\xfd" and len(data) < len(zstandard.decompress(data)) / 3
            for _, _, data in rows
        )
    finally:
        store.close()


@pytest.mark.parametrize("old_form", ["plain JSON", "zlib"])
def test_the_sqlite_store_reads_batches_written_by_earlier_versions(tmp_path: Path, old_form: str) -> None:
    """Rows written before batches were compressed (the JSON as it is, a trace id per span), and rows
    compressed with zlib (before Zstandard), still read."""
    from groundwork.testing.trace_store import make_spans

    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        old, new = make_spans(4, hit=True), make_spans(3)
        store.add_spans(old)
        with store.db.transaction() as db:  # rewrite the row the way the store wrote it before
            (data,) = db.execute("SELECT spans FROM span_batches").fetchone()
            raw = zstandard.decompress(data)
            if old_form == "plain JSON":
                ids = "".join(f"{s.trace_id:032x}" for s in old)
                db.execute("UPDATE span_batches SET spans = ?, trace_ids = ?", (raw, ids))
            else:
                db.execute("UPDATE span_batches SET spans = ?", (zlib.compress(raw, 1),))
        store.add_spans(new)
        old_root = next(s for s in old if s.parent_id is None)
        spans = store.trace(f"{old_root.trace_id:032x}")
        assert len(spans) == 2 and {s.name for s in spans} == {old_root.name, "cache.lookup"}
        assert spans[-1].attributes == {"cache.hit": True}
        assert len(store.recent(20)) == 7
        assert store.stats().requests == 7
    finally:
        store.close()


def test_spans_of_the_per_span_schema_move_to_batches_without_loss(tmp_path: Path) -> None:
    from groundwork.observability import store as store_module
    from groundwork.stores.sqlite_db import SQLiteDatabase
    from groundwork.testing.trace_store import make_spans

    path = tmp_path / "traces.sqlite3"
    spans = make_spans(3, hit=True)
    old = SQLiteDatabase(path, store_module.MIGRATIONS[:2], what="trace store")  # before span batches
    with old.transaction() as db:
        for s in spans:
            db.execute(
                "INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"{s.trace_id:032x}",
                    f"{s.span_id:016x}",
                    None if s.parent_id is None else f"{s.parent_id:016x}",
                    s.name,
                    s.start_ns,
                    s.end_ns,
                    s.status,
                    '{"cache.hit": true, "gen_ai.usage.input_tokens": 10}',
                ),
            )
    old.close()
    store = TraceStore(path)
    try:
        roots = store.recent(10)
        assert [r.trace_id for r in roots] == [f"{s.trace_id:032x}" for s in spans[1::2]][::-1]
        moved = store.trace(roots[0].trace_id)
        assert [s.name for s in moved] == ["POST /v1/chat/completions #2", "cache.lookup"]
        assert moved[1].parent_id == moved[0].span_id == f"{spans[5].span_id:016x}"
        assert (store.stats().cache_hits, store.stats().prompt_tokens) == (3, 30)
        tables = {r[0] for r in store.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "spans" not in tables
    finally:
        store.close()


def test_a_malformed_or_unknown_trace_id_finds_nothing(tmp_path: Path) -> None:
    from groundwork.testing.trace_store import make_spans

    store = TraceStore(tmp_path / "traces.sqlite3")
    try:
        spans = make_spans(2)
        store.add_spans(spans)
        known = f"{spans[0].trace_id:032x}"
        assert store.trace("zz" + known[2:]) == []
        assert store.trace(known[:8] + "0" * 24) == []  # the same second, another trace
        assert len(store.trace(known)) == 2
    finally:
        store.close()
