"""Tracing: the :func:`span` helper every step uses, and :class:`Tracing` that records and exports.

A span on the request path is a plain record (:class:`RecordingSpan`): W3C trace context ids (a 128-bit
trace id from :func:`new_trace_id` and a random 64-bit span id), a name, start and end times in ns, a
status and its attributes in a plain dict. Ending one appends it to a bounded queue per exporter
(:class:`~groundwork.observability.export.ExportQueue`), drained by a thread of its own: export never
blocks a request, and spans that do not fit are counted. OpenTelemetry SDK spans (``ReadableSpan``) are
built only there, in the export thread, and only for OpenTelemetry exporters such as OTLP
(:mod:`groundwork.observability.otel`); the local trace store takes the records as they are. An SDK
span costs several times the whole record on this path (its locks, bounded attributes, context attach
and detach, sampler and processors), which is what kept every request traced out of reach.

The current span lives in one context variable, set by the HTTP middleware for the request's root
span and by each :func:`span` block for its own duration. Code that runs outside a traced request gets
:data:`NON_RECORDING`, a span that ignores everything, for almost nothing. A CLI command that wants
traces of its own calls :meth:`Tracing.activate`: spans then start new traces there.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from groundwork.errors import GroundworkError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from groundwork.observability.export import Exporter, ExportQueue

AttrValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
SpanKind = Literal["server", "internal", "client"]

DEFAULT_EXPORT_INTERVAL_S = 2.0
"""How often an export thread wakes by default (``observability.export_interval_s``)."""

_SCALARS = frozenset({str, bool, int, float})
_getrandbits = random.getrandbits  # the module's generator: C code, re-seeded in a forked child


def new_trace_id() -> int:
    """A 128-bit trace id: the Unix time in seconds in its first 32 bits, then 96 random bits.

    As AWS X-Ray's ids (and OpenTelemetry's ``AwsXRayIdGenerator``): still a valid W3C trace id, whose
    right-most 7 bytes are random as trace context level 2 asks, and ids made later sort later, so the
    trace stores' indexes on it grow at one end instead of taking writes all over (in a store of
    60,000 spans that halved the CPU of a span insert into SQLite).
    """
    return (int(time.time()) << 96) | _getrandbits(96)


def clean_value(value: Any) -> AttrValue:
    """A value OpenTelemetry accepts: scalars and lists or tuples of them as they are, others as text."""
    if type(value) in _SCALARS:
        return value  # type: ignore[no-any-return]
    if isinstance(value, list | tuple) and all(type(v) in _SCALARS for v in value):
        return tuple(value)
    return str(value)


def clean_attributes(attrs: Mapping[str, Any]) -> dict[str, AttrValue]:
    """Attributes OpenTelemetry accepts: ``None`` values dropped, others as :func:`clean_value` makes them."""
    return {k: v if type(v) in _SCALARS else clean_value(v) for k, v in attrs.items() if v is not None}


class Span:
    """A span that records nothing: what :func:`span` gives outside a traced request.

    :class:`RecordingSpan` is the one that records; both are context managers (``with span(...)``).
    """

    __slots__ = ()

    def is_recording(self) -> bool:
        return False

    @property
    def trace_id(self) -> int:
        """The 128-bit trace id (0: none)."""
        return 0

    @property
    def span_id(self) -> int:
        """The 64-bit span id (0: none)."""
        return 0

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (``None`` is ignored; a value OpenTelemetry does not take becomes text)."""

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes, as :meth:`set_attribute` does."""

    def set_error(self, message: str = "") -> None:
        """Mark the span failed (status ``error``) with an optional description."""

    def update_name(self, name: str) -> None:
        """Rename the span (the request span is named after its route once routing is done)."""

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


NON_RECORDING = Span()
"""The span of code that runs outside any recorded trace."""

_CURRENT: ContextVar[Span] = ContextVar("groundwork_span", default=NON_RECORDING)
_ACTIVE: ContextVar[Tracing | None] = ContextVar("groundwork_tracing", default=None)


class RecordingSpan(Span):
    """A span being recorded, then (once ended) the finished record that exporters read.

    Plain fields; ``parent_id`` is ``None`` for the root of a trace; ``status`` is ``ok`` or ``error``.
    Attributes set after the end are ignored, so the export thread reads a record nobody changes.
    """

    __slots__ = (
        "_parent",
        "_token",
        "_tracing",
        "attributes",
        "end_ns",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "status",
        "status_message",
        "trace_id",
    )
    # plain slots here (the base class's are properties that say 0): reading one is not a call
    trace_id: int
    span_id: int

    def __init__(
        self,
        tracing: Tracing,
        name: str,
        trace_id: int,
        parent: RecordingSpan | None,
        attributes: dict[str, AttrValue],
        kind: SpanKind = "internal",
    ) -> None:
        self._tracing = tracing
        self.name = name
        self.trace_id = trace_id
        self.span_id = _getrandbits(64) or 1
        self._parent = parent
        self.parent_id = parent.span_id if parent is not None else None
        self.kind = kind
        self.attributes = attributes
        self.status = "ok"
        self.status_message = ""
        self.end_ns = 0
        self._token: Token[Span] | None = None
        self.start_ns = time.time_ns()

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, key: str, value: Any) -> None:
        if value is not None and not self.end_ns:
            self.attributes[key] = value if type(value) in _SCALARS else clean_value(value)

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if not self.end_ns:
            for key, value in attributes.items():
                if value is not None:
                    self.attributes[key] = value if type(value) in _SCALARS else clean_value(value)

    def set_error(self, message: str = "") -> None:
        if not self.end_ns:
            self.status = "error"
            self.status_message = message

    def update_name(self, name: str) -> None:
        if not self.end_ns:
            self.name = name

    def end(self) -> None:
        """Finish the span and hand it to the exporters (a second call does nothing)."""
        if not self.end_ns:
            self.end_ns = time.time_ns()
            for put in self._tracing._puts:  # Tracing.finish, without its call
                put(self)

    def __enter__(self) -> RecordingSpan:
        self._token = _CURRENT.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            record_error(self, exc)
        if not self.end_ns:  # end(), without its call
            self.end_ns = time.time_ns()
            for put in self._tracing._puts:
                put(self)
        token, self._token = self._token, None
        if token is not None:
            try:
                _CURRENT.reset(token)
            except ValueError:  # left in another context (an async generator finished by another task)
                _CURRENT.set(self._parent or NON_RECORDING)

    def __repr__(self) -> str:
        return f"<RecordingSpan {self.name!r} {self.trace_id:032x}/{self.span_id:016x}>"


# The context variable's own methods, not Python functions that call them: these run on every request
# (the middleware, InstrumentedModel), and a Python call costs more than what it wraps.
current_span: Callable[[], Span] = _CURRENT.get
"""``current_span()``: the span of the running step (:data:`NON_RECORDING` outside a recorded trace)."""

use_span: Callable[[Span], Token[Span]] = _CURRENT.set
"""``use_span(s)``: make ``s`` the current span in this context (the HTTP middleware's root); a token
that :func:`reset_span` takes to undo it."""

reset_span: Callable[[Token[Span]], None] = _CURRENT.reset
"""``reset_span(token)``: undo :func:`use_span`."""


def use_tracer(tracing: Tracing | None) -> None:
    """Make ``tracing`` record the spans opened in this context outside a trace (a CLI command), or
    (``None``) record nothing there."""
    _ACTIVE.set(tracing)


def record_error(s: Span, exc: BaseException) -> None:
    """Mark ``s`` failed by ``exc``; a :class:`GroundworkError` adds its id, category and severity."""
    if not s.is_recording():
        return
    s.set_error(str(exc)[:200])
    s.set_attribute("error.type", type(exc).__name__)
    if isinstance(exc, GroundworkError):
        s.set_attribute("error.id", exc.error_id)
        s.set_attribute("error.category", str(exc.category))
        s.set_attribute("error.severity", str(exc.severity))


def span(name: str, **attrs: Any) -> Span:
    """A child span of the current one named ``name`` (``auth``, ``guards``, ``retrieve``, ...), to use
    as ``with span(...) as s:``.

    :data:`NON_RECORDING` outside a recorded trace (unless :meth:`Tracing.activate` made this context
    start traces). An exception leaving the block marks the span failed, with the error id of a
    :class:`GroundworkError`, and is re-raised.
    """
    parent = _CURRENT.get()
    if type(parent) is RecordingSpan:
        for value in attrs.values():  # ``attrs`` is a new dict: kept as it is when every value is a scalar
            if type(value) not in _SCALARS:
                attrs = clean_attributes(attrs)
                break
        return RecordingSpan(parent._tracing, name, parent.trace_id, parent, attrs)
    if parent is NON_RECORDING:
        tracing = _ACTIVE.get()
        if tracing is not None and tracing.sample():
            return tracing.root(name, clean_attributes(attrs), kind="internal")
    return NON_RECORDING


def current_trace_id() -> str | None:
    """The 32-hex-digit id of the current trace, or ``None`` outside a recorded trace."""
    s = _CURRENT.get()
    return f"{s.trace_id:032x}" if s.trace_id else None


class Tracing:
    """Records spans and exports them: one :class:`~groundwork.observability.export.ExportQueue`
    (bounded buffer and thread) per exporter.

    ``exporters`` are :class:`~groundwork.observability.export.Exporter` s (the local trace store) or
    OpenTelemetry ``SpanExporter`` s (OTLP, any other), which get SDK spans built in their export
    thread. An exporter's ``max_batch_size`` attribute, when it has one, is the most spans it gets in
    one call (512 otherwise). ``on_drop(exporter_name, n)`` is called when a queue is full and ``n``
    spans are dropped; ``on_export_error(exporter_name, n)`` when an exporter fails a batch of ``n``
    spans.
    ``sample_ratio`` is the share of traces recorded (decided at each trace's root);
    ``export_interval_s`` how often each export thread wakes (sooner when half its queue is full).
    """

    def __init__(
        self,
        service_name: str,
        exporters: Mapping[str, Exporter | SpanExporter],
        *,
        sample_ratio: float = 1.0,
        queue_size: int = 4096,
        export_interval_s: float = DEFAULT_EXPORT_INTERVAL_S,
        on_drop: Callable[[str, int], None] | None = None,
        on_export_error: Callable[[str, int], None] | None = None,
    ) -> None:
        from groundwork.observability.export import DEFAULT_BATCH_SIZE, ExportQueue, as_exporter

        self.service_name = service_name
        self.sample_ratio = sample_ratio
        self.queues: dict[str, ExportQueue] = {
            name: ExportQueue(
                as_exporter(exporter, service_name),
                name=name,
                max_queue_size=queue_size,
                delay_s=export_interval_s,
                batch_size=getattr(exporter, "max_batch_size", DEFAULT_BATCH_SIZE),
                on_drop=on_drop,
                on_error=on_export_error,
            )
            for name, exporter in exporters.items()
        }
        self._puts = tuple(q.put for q in self.queues.values())

    def sample(self) -> bool:
        """Whether to record a new trace (always, at the default ``sample_ratio`` 1)."""
        ratio = self.sample_ratio
        return ratio >= 1.0 or (ratio > 0.0 and random.random() < ratio)

    def root(
        self, name: str, attributes: dict[str, AttrValue] | None = None, kind: SpanKind = "server"
    ) -> RecordingSpan:
        """The root span of a new trace (not made current: enter it, or :func:`use_span`)."""
        trace_id = (int(time.time()) << 96) | _getrandbits(96)  # new_trace_id(), without its call
        return RecordingSpan(self, name, trace_id, None, attributes or {}, kind)

    def finish(self, s: RecordingSpan) -> None:
        """Hand an ended span to every exporter's queue (never blocks; a full queue drops and counts)."""
        for put in self._puts:
            put(s)

    def activate(self) -> None:
        """Make spans opened in the current context outside a trace start traces of this tracing."""
        use_tracer(self)

    def dropped(self) -> dict[str, int]:
        """Spans dropped so far, by exporter."""
        return {name: q.dropped for name, q in self.queues.items()}

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queue is empty (or ``timeout_s``); ``True`` when all were drained."""
        return all(q.force_flush(timeout_s) for q in self.queues.values())

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the export threads, waiting at most ``timeout_s`` for each (spans left are dropped)."""
        for q in self.queues.values():
            q.shutdown(timeout_s)
