"""The conformance suite of :class:`~groundwork.observability.store.TraceStorage` backends.

A backend's test module subclasses :class:`TraceStoreConformance` and provides a ``trace_store``
fixture that yields an empty store. Spans are recorded by a real :class:`Tracing`, in :func:`make_spans`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from groundwork.observability.store import Exchange, TraceStorage
from groundwork.observability.tracing import RecordingSpan, Tracing, span, use_tracer


class _Collected:
    """An exporter that keeps what it is given."""

    def __init__(self) -> None:
        self.spans: list[RecordingSpan] = []

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        self.spans += spans
        return True

    def shutdown(self) -> None:
        return None


def make_spans(requests: int = 1, *, error: bool = False, hit: bool = False) -> list[RecordingSpan]:
    """Finished spans of ``requests`` requests: a root span each with a ``cache.lookup`` child."""
    collected = _Collected()
    tracing = Tracing("conformance", {"memory": collected})
    tracing.activate()
    try:
        for n in range(requests):
            with span(f"POST /v1/chat/completions #{n}") as root:
                root.set_attribute("gen_ai.usage.input_tokens", 10)
                root.set_attribute("gen_ai.usage.output_tokens", 5)
                root.set_attribute("groundwork.cost", 0.25)
                with span("cache.lookup") as lookup:
                    lookup.set_attribute("cache.hit", hit)
                if error:
                    root.set_attribute("error.category", "upstream")
                    root.set_error()
    finally:
        use_tracer(None)
        tracing.shutdown()
    return collected.spans


def _trace_ids(spans: Sequence[RecordingSpan]) -> list[str]:
    return list(dict.fromkeys(f"{s.trace_id:032x}" for s in spans))


class TraceStoreConformance:
    """Behaviour every trace store must show."""

    def test_spans_come_back_by_trace_and_roots_newest_first(self, trace_store: TraceStorage) -> None:
        first, second = make_spans(), make_spans(error=True)
        trace_store.add_spans(first)
        trace_store.add_spans(second)
        trace_store.add_spans(first)  # exported twice: kept once
        roots = trace_store.recent(10)
        assert [r.trace_id for r in roots] == [*_trace_ids(second), *_trace_ids(first)]
        assert roots[0].status == "error" and roots[1].status == "ok"
        spans = trace_store.trace(_trace_ids(first)[0].upper())
        assert [s.name for s in spans] == ["POST /v1/chat/completions #0", "cache.lookup"]
        assert spans[1].parent_id == spans[0].span_id and spans[0].parent_id is None
        assert spans[0].attributes["gen_ai.usage.input_tokens"] == 10
        assert spans[0].duration_ms >= 0
        assert trace_store.trace("0" * 32) == []

    def test_a_large_batch_is_stored_whole_and_once(self, trace_store: TraceStorage) -> None:
        spans = make_spans(41)  # 82 spans: more than one multi-row statement, and a remainder
        trace_store.add_spans(spans)
        trace_store.add_spans([*spans[:3], *spans[40:]])  # some again, in another batch: kept once
        roots = trace_store.recent(100)
        assert len(roots) == 41 and {r.trace_id for r in roots} == set(_trace_ids(spans))
        last = trace_store.trace(_trace_ids(spans)[-1])
        assert [s.name for s in last] == ["POST /v1/chat/completions #40", "cache.lookup"]
        assert trace_store.stats().cache_lookups == 41

    def test_a_trace_exported_in_two_batches_comes_back_whole(self, trace_store: TraceStorage) -> None:
        spans = make_spans(3)  # per request: the cache.lookup child ends (and is exported) first
        trace_store.add_spans(spans[:3])  # request 0 whole, request 1's child
        trace_store.add_spans(spans[3:])  # request 1's root, request 2
        middle = trace_store.trace(_trace_ids(spans)[1])
        assert [s.name for s in middle] == ["POST /v1/chat/completions #1", "cache.lookup"]
        assert middle[1].parent_id == middle[0].span_id
        assert [r.trace_id for r in trace_store.recent(3)] == _trace_ids(spans)[::-1]

    def test_recent_orders_roots_by_start_not_by_export(self, trace_store: TraceStorage) -> None:
        tracing = Tracing("conformance", {})
        try:
            long, short = tracing.root("long request"), tracing.root("short request")
            long.start_ns, short.start_ns = 1_000, 2_000
            short.end_ns, long.end_ns = 3_000, 9_000  # the later request ends (and is exported) first
            trace_store.add_spans([short])
            trace_store.add_spans([long])
            assert [r.name for r in trace_store.recent(1)] == ["short request"]
            assert [r.name for r in trace_store.recent(5)] == ["short request", "long request"]
        finally:
            tracing.shutdown()

    def test_stats_sum_tokens_cost_hits_and_errors(self, trace_store: TraceStorage) -> None:
        trace_store.add_spans(make_spans(2, hit=True))
        trace_store.add_spans(make_spans(1, error=True))
        stats = trace_store.stats()
        assert stats.requests == 3
        assert (stats.prompt_tokens, stats.completion_tokens) == (30, 15)
        assert stats.cost == pytest.approx(0.75)
        assert (stats.cache_lookups, stats.cache_hits) == (3, 2)
        assert stats.errors == {"upstream": 1}
        assert 0 <= stats.p50_ms <= stats.p95_ms
        assert trace_store.stats(since_ns=2**62).requests == 0

    def test_feedback_is_kept_per_trace_in_order(self, trace_store: TraceStorage) -> None:
        spans = make_spans()
        trace_store.add_spans(spans)
        trace_id = _trace_ids(spans)[0]
        trace_store.add_feedback(trace_id, 1.0, "right", "alice")
        trace_store.add_feedback(trace_id.upper(), 0.0, "wrong", "bob")
        got = trace_store.feedback(trace_id)
        assert [(f.score, f.comment, f.principal) for f in got] == [
            (1.0, "right", "alice"),
            (0.0, "wrong", "bob"),
        ]
        assert got[0].created_at > 1e9
        assert trace_store.feedback("0" * 32) == []

    def test_prune_keeps_the_most_recent_traces(self, trace_store: TraceStorage) -> None:
        batches = [make_spans() for _ in range(4)]
        for batch in batches:
            trace_store.add_spans(batch)
        trace_store.retention = 2
        trace_store.prune()
        kept = [r.trace_id for r in trace_store.recent(10)]
        assert kept == [_trace_ids(batches[3])[0], _trace_ids(batches[2])[0]]
        assert trace_store.trace(_trace_ids(batches[0])[0]) == []  # children go with their root

    def test_rated_answers_come_back_with_their_latest_feedback(self, trace_store: TraceStorage) -> None:
        rated = Exchange(
            "a" * 32, "alice", "hr", "How much leave?", "27 days. [1]", "extractive", ("leave.md",), 1.0
        )
        unrated = Exchange(
            "b" * 32, "bob", "hr", "Parking?", "Level 2. [1]", "extractive", ("parking.md",), 2.0
        )
        trace_store.add_exchange(rated)
        trace_store.add_exchange(unrated)
        trace_store.add_feedback(rated.trace_id, 0.0, "wrong", "alice")
        trace_store.add_feedback(rated.trace_id, 1.0, "right after all", "alice")
        [(exchange, feedback)] = trace_store.rated_exchanges()
        assert exchange == rated
        assert (feedback.score, feedback.comment) == (1.0, "right after all")
