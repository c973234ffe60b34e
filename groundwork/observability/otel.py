"""OpenTelemetry SDK spans from Groundwork's span records, for OTLP and other SDK exporters.

Called in the export thread only (:class:`~groundwork.observability.export.OpenTelemetryExporter`), and
only when such an exporter is configured: the request path never builds an SDK span.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from groundwork.observability.tracing import RecordingSpan

_SCOPE = InstrumentationScope("groundwork")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_KINDS = {"server": SpanKind.SERVER, "internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_OK = Status(StatusCode.UNSET)


def readable_span(s: RecordingSpan, resource: Resource) -> ReadableSpan:
    """The SDK span of one finished record (status ``UNSET`` unless it failed, as the SDK's own)."""
    parent = (
        None
        if s.parent_id is None
        else SpanContext(s.trace_id, s.parent_id, is_remote=False, trace_flags=_SAMPLED)
    )
    return ReadableSpan(
        name=s.name,
        context=SpanContext(s.trace_id, s.span_id, is_remote=False, trace_flags=_SAMPLED),
        parent=parent,
        resource=resource,
        attributes=s.attributes,
        kind=_KINDS.get(s.kind, SpanKind.INTERNAL),
        status=Status(StatusCode.ERROR, s.status_message or None) if s.status == "error" else _OK,
        start_time=s.start_ns,
        end_time=s.end_ns,
        instrumentation_scope=_SCOPE,
    )


def readable_spans(spans: Sequence[RecordingSpan], resource: Resource) -> list[ReadableSpan]:
    """:func:`readable_span` of each record."""
    return [readable_span(s, resource) for s in spans]


def otlp_exporter(endpoint: str, timeout_s: float) -> SpanExporter:
    """An OTLP/HTTP (protobuf) span exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, timeout=timeout_s)
