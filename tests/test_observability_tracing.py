"""Span records on the request path; OpenTelemetry SDK spans only for OTLP, built in the export thread."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from groundwork.api import create_app
from groundwork.container import Container
from groundwork.errors import UpstreamError
from groundwork.models.fake import FakeChatModel
from groundwork.observability import Observability, Tracing
from groundwork.observability.tracing import (
    NON_RECORDING,
    RecordingSpan,
    current_span,
    current_trace_id,
    span,
    use_span,
    use_tracer,
)
from tests.conftest import fake_settings
from tests.servers import CollectorHandler, serve_handler

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello there"}]}


class Collected:
    def __init__(self, ok: bool = True) -> None:
        self.spans: list[RecordingSpan] = []
        self.ok = ok

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        self.spans += spans
        return self.ok

    def shutdown(self) -> None:
        return None


@pytest.fixture
def tracing() -> Iterator[tuple[Tracing, Collected]]:
    collected = Collected()
    t = Tracing("test", {"memory": collected})
    yield t, collected
    use_tracer(None)
    t.shutdown(1)


def test_spans_are_plain_records_with_w3c_ids_and_parents(tracing: tuple[Tracing, Collected]) -> None:
    t, collected = tracing
    root = t.root("POST")
    token = use_span(root)
    try:
        with span("retrieve", collection="hr", top_k=5, skipped=None, path=Path("/x")) as child:
            child.set_attribute("retrieved", 3)
            child.set_attribute("nothing", None)
            child.set_attributes({"ids": ["a", "b"], "score": 0.5})
            with span("inner") as inner:
                assert current_span() is inner
            assert current_span() is child
        assert current_span() is root
        assert current_trace_id() == f"{root.trace_id:032x}"
    finally:
        root.end()
        token.var.reset(token)
    assert current_span() is NON_RECORDING and current_trace_id() is None
    assert t.force_flush(5)
    by_name = {s.name: s for s in collected.spans}
    assert list(by_name) == ["inner", "retrieve", "POST"]  # in the order they ended
    assert 0 < root.trace_id < 2**128 and 0 < root.span_id < 2**64
    assert abs((root.trace_id >> 96) - time.time()) < 60  # time first, so later traces sort later
    assert {s.trace_id for s in collected.spans} == {root.trace_id}
    assert len({s.span_id for s in collected.spans}) == 3
    assert by_name["POST"].parent_id is None and by_name["POST"].kind == "server"
    assert by_name["retrieve"].parent_id == root.span_id
    assert by_name["inner"].parent_id == by_name["retrieve"].span_id
    assert by_name["retrieve"].attributes == {
        "collection": "hr",
        "top_k": 5,
        "path": "/x",  # not a type OpenTelemetry takes: kept as text
        "retrieved": 3,
        "ids": ("a", "b"),
        "score": 0.5,
    }
    assert all(0 < s.start_ns <= s.end_ns for s in collected.spans)


def test_an_exception_marks_the_span_failed_with_the_error_id(tracing: tuple[Tracing, Collected]) -> None:
    t, collected = tracing
    t.activate()
    error = UpstreamError("upstream down")
    with pytest.raises(UpstreamError), span("model.attempt") as s:
        raise error
    s.set_attribute("late", 1)  # after its end: ignored, the exporter's record does not change
    assert t.force_flush(5)
    [record] = collected.spans
    assert record.status == "error" and "upstream down" in record.status_message
    assert record.attributes["error.id"] == error.error_id
    assert record.attributes["error.type"] == "UpstreamError"
    assert record.attributes["error.category"] == str(error.category)
    assert "late" not in record.attributes


def test_outside_a_trace_spans_record_nothing() -> None:
    use_tracer(None)
    with span("nothing", a=1) as s:
        assert s is NON_RECORDING and not s.is_recording()
        s.set_attribute("b", 2)
        assert current_trace_id() is None


def test_sample_ratio_zero_starts_no_trace() -> None:
    collected = Collected()
    t = Tracing("test", {"memory": collected}, sample_ratio=0.0)
    t.activate()
    try:
        with span("step") as s:
            assert not s.is_recording()
    finally:
        use_tracer(None)
        t.shutdown(1)
    assert collected.spans == []


def test_a_span_left_in_another_context_does_not_break(tracing: tuple[Tracing, Collected]) -> None:
    t, collected = tracing
    root = t.root("GET")
    token = use_span(root)
    s = span("stream")
    s.__enter__()
    # an async generator's span can be closed by another task, in another context
    contextvars.Context().run(s.__exit__, None, None, None)
    s.__exit__(None, None, None)  # a second exit does nothing
    root.end()
    token.var.reset(token)
    assert t.force_flush(5)
    assert [x.name for x in collected.spans] == ["stream", "GET"]


def test_a_failing_exporter_is_counted_and_does_not_stop_export(tmp_path: Path) -> None:
    failing = Collected(ok=False)
    o = Observability(fake_settings(tmp_path).observability, tmp_path, exporters={"failing": failing})
    try:
        o.tracing.activate()
        with span("a"):
            pass
        assert o.tracing.force_flush(5)
        with span("b"):
            pass
        assert o.tracing.force_flush(5)
        assert [s.name for s in failing.spans] == ["a", "b"]
        text = o.metrics.render().decode()
        assert 'groundwork_spans_export_failed_total{exporter="failing"} 2.0' in text
    finally:
        use_tracer(None)
        o.close()


class _Collector(CollectorHandler):
    requests: ClassVar[list[ExportTraceServiceRequest]] = []

    def receive(self, body: bytes) -> None:
        assert self.headers.get("content-type") == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).requests.append(request)


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.requests = []
    with serve_handler(_Collector) as root:
        yield f"{root}/v1/traces"


def _otlp_spans() -> list[tuple[dict[str, Any], Any]]:
    """Every span the collector received, with its resource's attributes."""
    out = []
    for request in _Collector.requests:
        for rs in request.resource_spans:
            resource = {a.key: a.value.string_value for a in rs.resource.attributes}
            out += [(resource, s) for ss in rs.scope_spans for s in ss.spans]
    return out


def _attributes(s: Any) -> dict[str, Any]:
    def value(v: Any) -> Any:
        kind = v.WhichOneof("value")
        return [value(x) for x in v.array_value.values] if kind == "array_value" else getattr(v, kind)

    return {a.key: value(a.value) for a in s.attributes}


@pytest.mark.anyio
async def test_otlp_export_reaches_a_collector_with_every_span_and_attribute(
    tmp_path: Path, collector: str
) -> None:
    c = Container(fake_settings(tmp_path / "data", observability={"otlp_endpoint": collector}))
    try:
        model = c.router.groups["fake"][0].model
        assert isinstance(model, FakeChatModel)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(c)), base_url="http://gw"
        ) as cl:
            ok = await cl.post("/v1/chat/completions", json=CHAT)
            model.enqueue(*[UpstreamError("boom")] * 5)
            failed = await cl.post("/v1/chat/completions", json=CHAT)
        assert ok.status_code == 200 and failed.status_code >= 500
        o = c.observability
        assert o is not None and o.tracing.force_flush(5)
        assert o.tracing.queues["otlp"].exported >= 4 and o.tracing.dropped() == {"local": 0, "otlp": 0}
    finally:
        c.close()
    spans = _otlp_spans()
    assert {resource["service.name"] for resource, _ in spans} == {"groundwork"}
    traces: dict[str, list[Any]] = {}
    for _, s in spans:
        traces.setdefault(s.trace_id.hex(), []).append(s)
    good = {s.name: s for s in traces[ok.headers["x-trace-id"]]}
    root, attempt = good["POST /v1/chat/completions"], good["model.attempt"]
    assert root.parent_span_id == b"" and attempt.parent_span_id == root.span_id
    assert root.kind == 2 and attempt.kind == 1  # SPAN_KIND_SERVER, SPAN_KIND_INTERNAL
    assert root.start_time_unix_nano <= attempt.start_time_unix_nano <= attempt.end_time_unix_nano
    assert attempt.end_time_unix_nano <= root.end_time_unix_nano
    attrs = _attributes(root)
    assert attrs["http.route"] == "/v1/chat/completions" and attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.request.model"] == "fake" and attrs["gen_ai.usage.output_tokens"] > 0
    assert _attributes(attempt) == {"group": "fake", "deployment": "fake/fake", "attempt": 1}
    bad_root = next(s for s in traces[failed.headers["x-trace-id"]] if not s.parent_span_id)
    assert bad_root.status.code == 2  # STATUS_CODE_ERROR
    assert _attributes(bad_root)["error.id"] == failed.json()["error"]["id"]
    assert sum(1 for s in traces[failed.headers["x-trace-id"]] if s.name == "model.attempt") >= 2


class Batches(Collected):
    def __init__(self, max_batch_size: int | None = None) -> None:
        super().__init__()
        self.batches: list[int] = []
        if max_batch_size is not None:
            self.max_batch_size = max_batch_size

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        self.batches.append(len(spans))
        return super().export(spans)


def test_an_exporter_gets_batches_as_large_as_it_asks() -> None:
    default, wide = Batches(), Batches(max_batch_size=1 << 30)
    t = Tracing("test", {"default": default, "wide": wide}, queue_size=4096)
    t.activate()
    try:
        for q in t.queues.values():
            q._wake_at = 1 << 30  # nothing drains until force_flush: the whole burst is one drain
        for i in range(1500):
            with span(f"s{i}"):
                pass
        assert t.force_flush(5)
        assert default.batches == [512, 512, 476]  # OTLP-sized batches unless the exporter says
        assert wide.batches == [1500]  # the local trace store: one call, so one transaction
        assert [s.name for s in wide.spans] == [f"s{i}" for i in range(1500)]
    finally:
        use_tracer(None)
        t.shutdown(1)


def test_the_trace_store_exporter_takes_the_whole_queue(tmp_path: Path) -> None:
    from groundwork.observability.store import TraceStore, TraceStoreExporter

    store = TraceStore(tmp_path / "traces.sqlite3")
    t = Tracing("test", {"local": TraceStoreExporter(store)}, queue_size=2048)
    try:
        assert t.queues["local"].batch_size == 2048
    finally:
        t.shutdown(1)
        store.close()


def test_a_queue_wakes_its_thread_at_half_full_drops_beyond_full_and_after_shutdown() -> None:
    from groundwork.observability.export import ExportQueue

    collected = Collected()
    drops: list[tuple[str, int]] = []
    q = ExportQueue(
        collected, name="q", max_queue_size=8, delay_s=60, on_drop=lambda n, k: drops.append((n, k))
    )
    tracing = Tracing("test", {})
    spans = [tracing.root(f"s{i}") for i in range(13)]
    try:
        for s in spans[:3]:
            q.put(s)
        time.sleep(0.05)
        assert q.qsize() == 3 and collected.spans == []  # below half: the thread sleeps its 60 s
        q.put(spans[3])  # the 4th of 8: wakes it
        deadline = time.monotonic() + 5
        while q.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [s.name for s in collected.spans] == ["s0", "s1", "s2", "s3"]
        q._wake_at = 1 << 30  # no more waking: fill it up
        for s in spans[4:]:
            q.put(s)
        assert q.qsize() == 8 and q.dropped == 1 and drops == [("q", 1)]  # the 9th of 8 is dropped
    finally:
        q.shutdown(5)
    assert len(collected.spans) == 4 + 8  # the 8 buffered were exported at shutdown
    q.put(spans[0])
    assert q.dropped == 2 and q.qsize() == 0  # closed: dropped and counted
