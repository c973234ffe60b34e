"""The lock-free metrics of the request path expose exactly what prometheus_client's would."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from groundwork.observability.metrics import LoopCounter, LoopGauge, LoopHistogram, Metrics

_BOUNDS = (0.005, 0.01, 0.1, 1, 2.5, 60)


def _text(registry: CollectorRegistry) -> str:
    """The exposition without the creation timestamps (they differ between two registries)."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())


def test_loop_metrics_render_as_prometheus_client_metrics() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = LoopCounter("c", "A counter.", ["a", "b"], ours)
    histogram = LoopHistogram("h", "A histogram.", ["a"], ours, buckets=_BOUNDS)
    gauge = LoopGauge("g", "A gauge.", ours)
    p_counter = Counter("c", "A counter.", ["a", "b"], registry=theirs)
    p_histogram = Histogram("h", "A histogram.", ["a"], buckets=_BOUNDS, registry=theirs)
    p_gauge = Gauge("g", "A gauge.", registry=theirs)
    for c in (counter, p_counter):
        c.labels("x", "y").inc()
        c.labels("x", "y").inc(2.5)
        c.labels("x", 200).inc()  # label values are text, as prometheus_client makes them
    for h in (histogram, p_histogram):
        for v in (0.001, 0.005, 0.0051, 0.7, 1, 59.9, 61, 1000):  # on a bound: in that bucket (le)
            h.labels("r").observe(v)
        h.labels("s").observe(0.02)
    for g in (gauge, p_gauge):
        g.inc()
        g.inc(3)
        g.dec()
    assert _text(ours) == _text(theirs)
    assert 'h_bucket{a="r",le="0.005"} 2.0' in _text(ours)
    assert 'h_bucket{a="r",le="+Inf"} 8.0' in _text(ours)


def test_loop_metrics_reject_what_prometheus_client_rejects() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("c", "A counter.", ["a"], registry)
    with pytest.raises(ValueError):
        counter.labels("x").inc(-1)
    with pytest.raises(ValueError):
        counter.labels("x", "y")
    assert counter.labels("x") is counter.labels("x")  # one series per label set, kept


def test_the_request_metrics_keep_their_names_and_labels() -> None:
    m = Metrics()
    m.requests.labels("POST", "/v1/chat/completions", "200").inc()
    m.request_latency.labels("POST", "/v1/chat/completions", "200").observe(0.012)
    m.in_flight.inc()
    m.tokens.labels("fake", "out").inc(7)
    m.model_latency.labels("fake", "ok").observe(0.3)
    m.ttft.labels("fake").observe(0.05)
    m.cost.labels("fake").inc(0.25)
    text = m.render().decode()
    for line in (
        'groundwork_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0',
        'groundwork_http_request_duration_seconds_bucket{le="0.025",method="POST",'
        'route="/v1/chat/completions",status="200"} 1.0',
        "groundwork_http_requests_in_flight 1.0",
        'groundwork_tokens_total{direction="out",model="fake"} 7.0',
        'groundwork_model_duration_seconds_count{model="fake",outcome="ok"} 1.0',
        'groundwork_model_time_to_first_token_seconds_sum{model="fake"} 0.05',
        'groundwork_cost_total{model="fake"} 0.25',
    ):
        assert line in text, line


def test_cache_and_guard_hooks_count_per_label_set_from_any_thread() -> None:
    import threading

    m = Metrics()

    def lookups() -> None:
        for i in range(20_000):
            m.cache_lookup("chat", "miss" if i % 2 else "exact")
            m.guard_decision("pii", "allow")

    threads = [threading.Thread(target=lookups) for _ in range(4)]
    for t in threads:
        t.start()
    lookups()  # and this thread at the same time
    for t in threads:
        t.join()
    text = m.render().decode()
    for line in (
        'groundwork_cache_lookups_total{kind="chat",result="miss"} 50000.0',
        'groundwork_cache_lookups_total{kind="chat",result="exact"} 50000.0',
        'groundwork_guard_decisions_total{decision="allow",guard="pii"} 100000.0',
    ):
        assert line in text, line
    assert m.cache.labels_of(("chat", "miss")) is m.cache.labels("chat", "miss")


def test_an_instrumented_model_counts_each_call_by_outcome_and_annotates_the_request_span() -> None:
    import asyncio

    from groundwork.errors import UpstreamError
    from groundwork.models.fake import FakeChatModel
    from groundwork.observability import InstrumentedModel
    from groundwork.observability.tracing import Tracing, reset_span, use_span
    from groundwork.types import Message

    metrics = Metrics()
    fake = FakeChatModel("m")
    model = InstrumentedModel(fake, metrics)
    fake.enqueue("one two three", UpstreamError("down"))
    tracing = Tracing("test", {})
    root = tracing.root("POST")
    token = use_span(root)
    try:
        asyncio.run(model.generate([Message("user", "a b")]))
        with pytest.raises(UpstreamError):
            asyncio.run(model.generate([Message("user", "c")]))
    finally:
        reset_span(token)
        tracing.shutdown(1)
    assert sum(metrics.model_latency.labels("m", "ok").counts) == 1
    assert sum(metrics.model_latency.labels("m", "error").counts) == 1
    assert metrics.tokens.labels("m", "in").value == 2 and metrics.tokens.labels("m", "out").value == 3
    assert {k: v for k, v in root.attributes.items() if k.startswith("gen_ai.")} == {
        "gen_ai.request.model": "m",
        "gen_ai.response.model": "m",
        "gen_ai.response.finish_reason": "stop",
        "gen_ai.usage.input_tokens": 2,
        "gen_ai.usage.output_tokens": 3,
    }
