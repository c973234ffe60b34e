"""A span processor that never blocks the request: a bounded buffer and one export thread per exporter.

OpenTelemetry's ``BatchSpanProcessor`` drops spans when its queue is full and only logs it; here every
dropped span is counted (``dropped`` and the ``on_drop`` callback, which the metrics turn into
``groundwork_spans_dropped_total``), and every failed export too. One processor per exporter, so a slow
or dead OTLP collector never holds up the local trace store.

Ending a span costs a ``deque.append``. The export thread sleeps ``delay_s`` between exports (or until
half the buffer is full) and then exports everything buffered in batches: waking for every span would
hand the GIL back and forth with the event loop on each request, which measured as most of tracing's cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("groundwork.observability")


class QueuedSpanProcessor(SpanProcessor):
    """Hands finished spans to ``exporter`` from a daemon thread, in batches of up to ``batch_size``."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        name: str = "exporter",
        max_queue_size: int = 4096,
        batch_size: int = 512,
        delay_s: float = 0.5,
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
        self._buffer: deque[ReadableSpan] = deque()
        self._counts = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._exporting = False
        self._thread = threading.Thread(target=self._run, name=f"span-export-{name}", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._stop.is_set() or len(self._buffer) >= self.max_queue_size:
            self._drop(1)
            return
        self._buffer.append(span)
        if len(self._buffer) * 2 >= self.max_queue_size:
            self._wake.set()

    def _drop(self, n: int) -> None:
        with self._counts:
            self.dropped += n
        if self._on_drop is not None:
            self._on_drop(self.name, n)

    def qsize(self) -> int:
        """Spans waiting to be exported."""
        return len(self._buffer)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.delay_s)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        self._exporting = True
        try:
            while self._buffer and not (self._stop.is_set() and self._abandon):
                batch: list[ReadableSpan] = []
                while self._buffer and len(batch) < self.batch_size:
                    batch.append(self._buffer.popleft())
                self._export(batch)
        finally:
            self._exporting = False

    _abandon = False

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            result = self.exporter.export(batch)
        except Exception as exc:  # an exporter bug must not kill the thread
            logger.warning("span exporter %s failed: %s: %s", self.name, type(exc).__name__, exc)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
            return
        self.failed += len(batch)
        if self._on_error is not None:
            self._on_error(self.name, len(batch))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export what is buffered now; ``True`` when everything was handed to the exporter in time."""
        deadline = time.monotonic() + timeout_millis / 1000
        while time.monotonic() < deadline:
            if not self._buffer and not self._exporting:
                return True
            self._wake.set()
            time.sleep(0.005)
        return not self._buffer and not self._exporting

    def shutdown(self) -> None:
        self.shutdown_within(2.0)

    def shutdown_within(self, timeout_s: float) -> None:
        """Stop the thread, waiting at most ``timeout_s``; spans still buffered are counted as dropped."""
        if self._stop.is_set():
            return
        self.force_flush(int(timeout_s * 1000))
        self._abandon = True
        self._stop.set()
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
