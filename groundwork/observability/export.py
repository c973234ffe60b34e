"""Span export that never blocks the request: a bounded buffer and one export thread per exporter.

Ending a span costs a ``deque.append`` per exporter. When a buffer is full the span is dropped and
counted (``dropped`` and the ``on_drop`` callback, which the metrics turn into
``groundwork_spans_dropped_total``); every failed export is counted too. One queue per exporter, so a
slow or dead OTLP collector never holds up the local trace store.

The export thread sleeps ``delay_s`` between exports (or until half the buffer is full) and then
exports everything buffered in batches: waking for every span would hand the GIL back and forth with
the event loop on each request.

An :class:`Exporter` takes the span records as they are (the local trace store does). An OpenTelemetry
``SpanExporter`` (OTLP, or any other) is wrapped in :class:`OpenTelemetryExporter`, which builds SDK
``ReadableSpan`` s from the records in the export thread, the only place they are ever built.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat
from operator import call
from typing import Protocol

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from groundwork.observability.tracing import DEFAULT_EXPORT_INTERVAL_S, RecordingSpan

logger = logging.getLogger("groundwork.observability")

DEFAULT_BATCH_SIZE = 512
"""Spans per export call of an exporter that does not say (``max_batch_size``): OTLP's usual batch."""


class Exporter(Protocol):
    """Where finished spans go, a batch at a time, from an export thread.

    An exporter may also have a ``max_batch_size`` attribute: the most spans it takes in one call
    (:data:`DEFAULT_BATCH_SIZE` when it has none; the queue's size at most).
    """

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        """Export ``spans``; ``False`` (or an exception) when they could not be."""
        ...

    def shutdown(self) -> None:
        """Release what the exporter holds (called once, after its last export)."""
        ...


class OpenTelemetryExporter:
    """An OpenTelemetry SDK ``SpanExporter`` (e.g. OTLP/HTTP) fed with ``ReadableSpan`` s built from
    the records, in the export thread."""

    def __init__(self, exporter: SpanExporter, service_name: str) -> None:
        from opentelemetry.sdk.resources import Resource

        self.exporter = exporter
        self.resource = Resource.create({"service.name": service_name})

    def export(self, spans: Sequence[RecordingSpan]) -> bool:
        from groundwork.observability.otel import readable_spans

        return self.exporter.export(readable_spans(spans, self.resource)) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.exporter.shutdown()


def as_exporter(exporter: Exporter | SpanExporter, service_name: str) -> Exporter:
    """``exporter``, an OpenTelemetry ``SpanExporter`` wrapped in :class:`OpenTelemetryExporter`."""
    if isinstance(exporter, SpanExporter):
        return OpenTelemetryExporter(exporter, service_name)
    return exporter


class ExportQueue:
    """Hands finished spans to ``exporter`` from a daemon thread, in batches of up to ``batch_size``."""

    def __init__(
        self,
        exporter: Exporter,
        *,
        name: str = "exporter",
        max_queue_size: int = 4096,
        batch_size: int = DEFAULT_BATCH_SIZE,
        delay_s: float = DEFAULT_EXPORT_INTERVAL_S,
        on_drop: Callable[[str, int], None] | None = None,
        on_error: Callable[[str, int], None] | None = None,
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.max_queue_size = max_queue_size
        self.batch_size = max(1, min(batch_size, max_queue_size))
        self.delay_s = delay_s
        self.dropped = 0
        self.failed = 0
        self.exported = 0
        self._on_drop = on_drop
        self._on_error = on_error
        self._buffer: deque[RecordingSpan] = deque()
        self._room = max_queue_size  # 0 once closed
        self._wake_at = max(1, max_queue_size // 2)
        self._counts = threading.Lock()
        self._wake = threading.Event()
        self._closed = False  # no more spans taken
        self._abandon = False  # stop exporting what is left
        self._exporting = False
        self._thread = threading.Thread(target=self._run, name=f"span-export-{name}", daemon=True)
        self._thread.start()

    def put(self, span: RecordingSpan) -> None:
        """Buffer ``span`` for export; when the buffer is full (or closed), drop and count it."""
        buffer = self._buffer
        if len(buffer) < self._room:
            buffer.append(span)
            if len(buffer) == self._wake_at:  # grows one at a time: it reaches the mark, not past it
                self._wake.set()
        else:
            self._drop(1)

    def _drop(self, n: int) -> None:
        with self._counts:
            self.dropped += n
        if self._on_drop is not None:
            self._on_drop(self.name, n)

    def qsize(self) -> int:
        """Spans waiting to be exported."""
        return len(self._buffer)

    def _run(self) -> None:
        while not self._abandon:
            self._wake.wait(self.delay_s)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        self._exporting = True
        try:
            buffer = self._buffer
            take = buffer.popleft
            while buffer and not self._abandon:
                n = min(len(buffer), self.batch_size)
                # popleft n times (in C); each popleft is atomic, so spans the event loop appends
                # meanwhile wait for the next batch
                self._export(list(map(call, repeat(take, n))))
        finally:
            self._exporting = False

    def _export(self, batch: list[RecordingSpan]) -> None:
        try:
            ok = self.exporter.export(batch)
        except Exception as exc:  # an exporter bug must not kill the thread
            logger.warning("span exporter %s failed: %s: %s", self.name, type(exc).__name__, exc)
            ok = False
        if ok:
            self.exported += len(batch)
            return
        self.failed += len(batch)
        if self._on_error is not None:
            self._on_error(self.name, len(batch))

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export what is buffered now; ``True`` when everything was handed to the exporter in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._buffer and not self._exporting:
                return True
            self._wake.set()
            time.sleep(0.005)
        return not self._buffer and not self._exporting

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop the thread, waiting at most ``timeout_s``; spans still buffered are counted as dropped."""
        if self._closed:
            return
        self._closed = True
        self._room = 0
        self.force_flush(timeout_s)
        self._abandon = True
        self._wake.set()
        self._thread.join(timeout_s)
        left = len(self._buffer)
        self._buffer.clear()
        if left:
            self._drop(left)
        try:
            self.exporter.shutdown()
        except Exception as exc:
            logger.warning("span exporter %s did not shut down: %s", self.name, exc)
