"""Tracing with OpenTelemetry: the :func:`span` helper every step uses, and :class:`Tracing` that exports.

A request's tracer is found through a context variable (set by the HTTP middleware, or by
:meth:`Tracing.activate`), not a process-global provider, so two containers in one process never share
spans and code that runs without tracing pays almost nothing: :func:`span` then yields a non-recording
span. Export never blocks a request: every exporter sits behind its own bounded queue and thread
(:class:`~groundwork.observability.export.QueuedSpanProcessor`), and spans that do not fit are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from groundwork.errors import GroundworkError
from groundwork.observability.export import QueuedSpanProcessor

_ACTIVE: ContextVar[Tracer | None] = ContextVar("groundwork_tracer", default=None)

AttrValue = str | bool | int | float


def active_tracer() -> Tracer | None:
    """The tracer of the running request, or ``None`` when nothing is traced."""
    return _ACTIVE.get()


def use_tracer(tracer: Tracer | None) -> None:
    """Make ``tracer`` the one :func:`span` uses in this context (a request's task, a CLI command)."""
    _ACTIVE.set(tracer)


def clean_attributes(attrs: dict[str, Any]) -> dict[str, AttrValue]:
    """Attributes OpenTelemetry accepts: ``None`` values dropped, others made str unless scalar."""
    return {
        k: v if isinstance(v, str | bool | int | float) else str(v) for k, v in attrs.items() if v is not None
    }


def record_error(s: Span, exc: BaseException) -> None:
    """Mark ``s`` failed by ``exc``; a :class:`GroundworkError` adds its id, category and severity."""
    if not s.is_recording():
        return
    s.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
    s.set_attribute("error.type", type(exc).__name__)
    if isinstance(exc, GroundworkError):
        s.set_attribute("error.id", exc.error_id)
        s.set_attribute("error.category", str(exc.category))
        s.set_attribute("error.severity", str(exc.severity))


@contextmanager
def span(name: str, **attrs: Any) -> Iterator[Span]:
    """A child span of the current one named ``name`` (``auth``, ``guards``, ``retrieve``, ...).

    A no-op (non-recording span) when the context has no tracer. An exception leaving the block marks
    the span failed, with the error id of a :class:`GroundworkError`, and is re-raised.
    """
    tracer = _ACTIVE.get()
    if tracer is None:
        yield trace.INVALID_SPAN
        return
    current = trace.get_current_span()
    if current.get_span_context().is_valid and not current.is_recording():
        yield current  # an unsampled trace: its steps are not recorded either, and cost nothing
        return
    with tracer.start_as_current_span(
        name, attributes=clean_attributes(attrs), record_exception=False, set_status_on_exception=False
    ) as s:
        try:
            yield s
        except BaseException as exc:
            record_error(s, exc)
            raise


def current_trace_id() -> str | None:
    """The 32-hex-digit id of the current trace, or ``None`` outside a recorded trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class Tracing:
    """A tracer provider of its own with one :class:`QueuedSpanProcessor` per exporter.

    ``on_drop(exporter_name, n)`` is called when a queue is full and ``n`` spans are dropped;
    ``on_export_error(exporter_name, n)`` when an exporter fails a batch of ``n`` spans.
    """

    def __init__(
        self,
        service_name: str,
        exporters: dict[str, SpanExporter],
        *,
        sample_ratio: float = 1.0,
        queue_size: int = 4096,
        on_drop: Callable[[str, int], None] | None = None,
        on_export_error: Callable[[str, int], None] | None = None,
    ) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self.processors: dict[str, QueuedSpanProcessor] = {}
        for name, exporter in exporters.items():
            processor = QueuedSpanProcessor(
                exporter, name=name, max_queue_size=queue_size, on_drop=on_drop, on_error=on_export_error
            )
            self.processors[name] = processor
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("groundwork")
        self.sample_ratio = sample_ratio

    def activate(self) -> None:
        """Make this tracer the active one in the current context."""
        use_tracer(self.tracer)

    def dropped(self) -> dict[str, int]:
        """Spans dropped so far, by exporter."""
        return {name: p.dropped for name, p in self.processors.items()}

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queue is empty (or ``timeout_s``); ``True`` when all were drained."""
        return all(p.force_flush(int(timeout_s * 1000)) for p in self.processors.values())

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the export threads, waiting at most ``timeout_s`` for each (spans left are dropped)."""
        for p in self.processors.values():
            p.shutdown_within(timeout_s)
