"""Webhook notifications of critical errors, rate limited so an outage sends a few messages, not a flood.

:class:`NotificationLimiter` is the pure policy (per error type at most one message per
``min_interval_s``; what was suppressed meanwhile is counted in the next message).
:class:`WebhookHandler` is a logging handler: records at ``CRITICAL`` level, or carrying
``severity="critical"`` (a :class:`~groundwork.errors.GroundworkError` of that severity), are POSTed as
JSON from a background thread, so logging never waits on the network.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable

import orjson

logger = logging.getLogger("groundwork.observability")


class NotificationLimiter:
    """Decides whether a notification of ``kind`` goes out now. Time is passed in."""

    def __init__(self, min_interval_s: float = 60.0) -> None:
        self.min_interval_s = min_interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, kind: str, now: float) -> int | None:
        """``None`` to suppress; else the number of notifications of ``kind`` suppressed since the last."""
        last = self._last.get(kind)
        if last is not None and now - last < self.min_interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._suppressed.pop(kind, 0)


def post_json(url: str, body: bytes, timeout_s: float = 5.0) -> None:
    """POST ``body`` (JSON) to ``url``; raises on failure."""
    request = urllib.request.Request(url, body, {"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        response.read()


class WebhookHandler(logging.Handler):
    """Sends critical records to ``url``, rate limited per error type, from a daemon thread."""

    def __init__(
        self,
        url: str,
        min_interval_s: float = 60.0,
        *,
        service: str = "groundwork",
        send: Callable[[str, bytes], None] | None = None,
        on_outcome: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # WARNING, not ERROR: the API logs a failed request at warning level with the error's severity
        super().__init__(logging.WARNING)
        self.url = url
        self.service = service
        self.limiter = NotificationLimiter(min_interval_s)
        self._send = send or (lambda u, b: post_json(u, b))
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._clock = clock
        self._queue: queue.Queue[bytes] = queue.Queue(100)
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        critical = record.levelno >= logging.CRITICAL or getattr(record, "severity", None) == "critical"
        if not critical:
            return
        kind = str(getattr(record, "error_type", None) or record.name)
        suppressed = self.limiter.allow(kind, self._clock())
        if suppressed is None:
            self._on_outcome("suppressed")
            return
        body = {
            "service": self.service,
            "text": f"[{self.service}] critical: {record.getMessage()}"[:1000],
            "kind": kind,
            "error_id": getattr(record, "error_id", None),
            "request_id": getattr(record, "request_id", None),
            "trace_id": getattr(record, "trace_id", None),
            "suppressed_since_last": suppressed,
            "time": record.created,
        }
        try:
            self._queue.put_nowait(orjson.dumps(body, default=str))
        except queue.Full:
            self._on_outcome("dropped")

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                self._send(self.url, body)
                self._on_outcome("sent")
            except Exception as exc:
                self._on_outcome("failed")
                logger.warning("webhook notification to %s failed: %s", self.url, exc)

    def flush_queue(self, timeout_s: float = 5.0) -> None:
        """Wait until queued notifications were handed to the webhook (for tests and shutdown)."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
