"""Structured logs: one JSON object a line with the request id, the trace id and the error id.

The request id comes from a context variable the HTTP middleware sets (:func:`set_request_id`), the
trace and span ids from the current span, and the error id from the record's ``error_id``
extra (``logger.warning(..., extra={"error_id": e.error_id})``) or, failing that, from a
:class:`~groundwork.errors.GroundworkError` passed as ``exc_info``.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson

from groundwork.errors import GroundworkError
from groundwork.observability.tracing import current_span

_REQUEST_ID: ContextVar[str | None] = ContextVar("groundwork_request_id", default=None)

_HANDLER_MARK = "_groundwork_handler"


def set_request_id(request_id: str | None) -> None:
    """The request id logs of this context carry."""
    _REQUEST_ID.set(request_id)


def _error_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "error_id", None)
    if value:
        return str(value)
    exc = record.exc_info[1] if record.exc_info else None
    return exc.error_id if isinstance(exc, GroundworkError) else None


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``trace_id``, ``span_id`` and ``error_id`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = getattr(record, "request_id", None) or _REQUEST_ID.get()
        s = current_span()
        record.trace_id = f"{s.trace_id:032x}" if s.trace_id else None
        record.span_id = f"{s.span_id:016x}" if s.span_id else None
        record.error_id = _error_id(record)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the ids (``null`` when unknown)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
            "error_id": getattr(record, "error_id", None),
        }
        severity = getattr(record, "severity", None)
        if severity:
            data["severity"] = severity
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data, default=str).decode()


def configure_logging(fmt: str = "json", level: str = "INFO", logger_name: str = "groundwork") -> None:
    """Send ``logger_name``'s records to stderr as JSON (or text), with the context ids. Idempotent."""
    logger = logging.getLogger(logger_name)
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_MARK, False):
            logger.removeHandler(h)
    handler = logging.StreamHandler()
    setattr(handler, _HANDLER_MARK, True)
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s %(trace_id)s] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level)
