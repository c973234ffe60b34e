"""Observability: tracing (OpenTelemetry-compatible, OTLP), metrics (Prometheus), JSON logs, notifications,
feedback.

:class:`Observability` holds the parts for one container, built from
:class:`~groundwork.config.ObservabilitySettings`: a :class:`Metrics` registry, a :class:`Tracing`
that records spans and exports them to the local :class:`TraceStore` and, when configured, to an OTLP
endpoint, and the webhook handler. Code elsewhere only needs :func:`span`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace.export import SpanExporter

from groundwork.config import ObservabilitySettings
from groundwork.errors import GroundworkError
from groundwork.observability.export import Exporter
from groundwork.observability.instrumented import InstrumentedModel
from groundwork.observability.logs import configure_logging, set_request_id
from groundwork.observability.metrics import Metrics
from groundwork.observability.notify import WebhookHandler
from groundwork.observability.otel import otlp_exporter
from groundwork.observability.store import TraceStorage, TraceStore, TraceStoreExporter
from groundwork.observability.tracing import (
    RecordingSpan,
    Span,
    Tracing,
    current_span,
    current_trace_id,
    record_error,
    span,
    use_tracer,
)

logger = logging.getLogger("groundwork.observability")

__all__ = [
    "Exporter",
    "InstrumentedModel",
    "Metrics",
    "Observability",
    "RecordingSpan",
    "Span",
    "TraceStorage",
    "TraceStore",
    "Tracing",
    "configure_logging",
    "current_span",
    "current_trace_id",
    "record_error",
    "set_request_id",
    "span",
    "use_tracer",
]


class Observability:
    """Metrics, tracing, the trace store and notifications of one container."""

    def __init__(
        self,
        settings: ObservabilitySettings,
        data_dir: Path,
        *,
        exporters: dict[str, Exporter | SpanExporter] | None = None,
        open_store: Callable[[], TraceStorage] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.trace_store: TraceStorage | None = None
        self.trace_store_error: str | None = None
        chosen: dict[str, Exporter | SpanExporter] = {}
        if settings.trace_store:
            try:
                self.trace_store = (
                    TraceStore(data_dir / "traces.sqlite3", settings.trace_retention)
                    if open_store is None
                    else open_store()  # e.g. the shared PostgreSQL (storage.backend: postgres)
                )
                chosen["local"] = TraceStoreExporter(self.trace_store)
            except (OSError, GroundworkError) as exc:  # tracing goes on without the local store
                self.trace_store_error = f"{type(exc).__name__}: {exc}"
                logger.error("the trace store cannot be opened: %s", self.trace_store_error)
        if settings.otlp_endpoint:
            chosen["otlp"] = otlp_exporter(settings.otlp_endpoint, settings.otlp_timeout_s)
        chosen.update(exporters or {})
        self.tracing = Tracing(
            settings.service_name,
            chosen,
            sample_ratio=settings.sample_ratio,
            queue_size=settings.export_queue_size,
            export_interval_s=settings.export_interval_s,
            on_drop=self.metrics.span_dropped,
            on_export_error=self.metrics.span_export_failed,
        )
        for name, queue in self.tracing.queues.items():
            self.metrics.callbacks.queues[f"spans_{name}"] = queue.qsize
        self.webhook: WebhookHandler | None = None
        if settings.webhook_url:
            self.webhook = WebhookHandler(
                settings.webhook_url,
                settings.webhook_min_interval_s,
                service=settings.service_name,
                on_outcome=lambda outcome: self.metrics.notifications.labels(outcome).inc(),
            )

    def install_logging(self) -> None:
        """JSON (or text) logs for the ``groundwork`` loggers, and the webhook handler when configured."""
        configure_logging(self.settings.log_format, self.settings.log_level)
        if self.webhook is not None:
            logger = logging.getLogger("groundwork")
            if self.webhook not in logger.handlers:
                logger.addHandler(self.webhook)

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop exporting (waiting at most ``timeout_s`` per exporter) and close the trace store."""
        self.tracing.shutdown(timeout_s)
        if self.webhook is not None:
            logging.getLogger("groundwork").removeHandler(self.webhook)
        if self.trace_store is not None:
            self.trace_store.close()
