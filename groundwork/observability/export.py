"""A span processor that never blocks the request: a bounded queue and one export thread per exporter.

OpenTelemetry's ``BatchSpanProcessor`` drops spans when its queue is full and only logs it; here every
dropped span is counted (``dropped`` and the ``on_drop`` callback, which the metrics turn into
``groundwork_spans_dropped_total``), and every failed export too. One processor per exporter, so a slow
or dead OTLP collector never holds up the local trace store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
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
        batch_size: int = 256,
        on_drop: Callable[[str, int], None] | None = None,
        on_error: Callable[[str, int], None] | None = None,
    ) -> None:
        self.exporter = exporter
        self.name = name
        self.batch_size = batch_size
        self.dropped = 0
        self.failed = 0
        self.exported = 0
        self._on_drop = on_drop
        self._on_error = on_error
        self._queue: queue.Queue[ReadableSpan] = queue.Queue(max_queue_size)
        self._pending = 0  # queued or being exported; guarded by _done
        self._done = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"span-export-{name}", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._stop.is_set():
            self._drop(1)
            return
        with self._done:
            try:
                self._queue.put_nowait(span)
            except queue.Full:
                pass
            else:
                self._pending += 1
                return
        self._drop(1)

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self._on_drop is not None:
            self._on_drop(self.name, n)

    def qsize(self) -> int:
        """Spans waiting to be exported."""
        return self._queue.qsize()

    def _take_batch(self) -> list[ReadableSpan]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            self._export(batch)
            with self._done:
                self._pending -= len(batch)
                self._done.notify_all()

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
        """Wait until the queue is drained and the last batch exported."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._done:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def shutdown(self) -> None:
        self.shutdown_within(2.0)

    def shutdown_within(self, timeout_s: float) -> None:
        """Stop the thread, waiting at most ``timeout_s``; spans still queued are counted as dropped."""
        if self._stop.is_set():
            return
        self.force_flush(int(timeout_s * 1000))
        self._stop.set()
        self._thread.join(timeout_s)
        left = self._queue.qsize()
        if left:
            self._drop(left)
        try:
            self.exporter.shutdown()
        except Exception as exc:
            logger.warning("span exporter %s did not shut down: %s", self.name, exc)
