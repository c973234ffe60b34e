"""Prometheus metrics, in a registry of their own (never the process-global default one).

:class:`Metrics` also implements the event hooks of the router (retries, fallbacks, cooldowns), the cache
(hits, misses, guard trips) and the span export queues, so those parts report without importing this.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _Callbacks(Collector):
    """Gauges read when scraped: export queue sizes, open upstream connections."""

    def __init__(self) -> None:
        self.queues: dict[str, Callable[[], int]] = {}
        self.connections: Callable[[], int] | None = None

    def collect(self):  # type: ignore[no-untyped-def]
        queue = GaugeMetricFamily(
            "groundwork_queue_size", "Items waiting in an internal queue.", labels=["queue"]
        )
        for name, size in self.queues.items():
            queue.add_metric([name], float(size()))
        yield queue
        if self.connections is not None:
            yield GaugeMetricFamily(
                "groundwork_upstream_connections_open",
                "Open pooled connections to upstream model servers.",
                value=float(self.connections()),
            )


class Metrics:
    """Every Groundwork metric. Read them with :meth:`render` (the body of ``GET /metrics``)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process CPU seconds, resident memory, open fds
        self.callbacks = _Callbacks()
        r.register(self.callbacks)
        self.requests = Counter(
            "groundwork_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "groundwork_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge("groundwork_http_requests_in_flight", "Requests being served.", registry=r)
        self.ttft = Histogram(
            "groundwork_model_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["model"],
            buckets=_LATENCY,
            registry=r,
        )
        self.model_latency = Histogram(
            "groundwork_model_duration_seconds",
            "Model call latency.",
            ["model", "outcome"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter("groundwork_tokens", "Tokens by direction.", ["model", "direction"], registry=r)
        self.cost = Counter(
            "groundwork_cost", "Cost of model calls (deployment prices).", ["model"], registry=r
        )
        self.cache = Counter(
            "groundwork_cache_lookups",
            "Cache lookups by kind and result (exact|semantic|miss).",
            ["kind", "result"],
            registry=r,
        )
        self.guard_trips = Counter(
            "groundwork_cache_guard_trips",
            "Semantic matches refused by the false-hit guard.",
            ["reason"],
            registry=r,
        )
        self.cache_errors = Counter(
            "groundwork_cache_errors",
            "Cache backend failures (served without the cache).",
            ["operation"],
            registry=r,
        )
        self.retries = Counter(
            "groundwork_router_retries",
            "Attempts retried after a failure.",
            ["group", "deployment", "category"],
            registry=r,
        )
        self.fallbacks = Counter(
            "groundwork_router_fallbacks", "Requests moved to a fallback group.", ["group", "to"], registry=r
        )
        self.cooldowns = Counter(
            "groundwork_router_cooldowns", "Deployments put in cooldown.", ["group", "deployment"], registry=r
        )
        self.rate_limited = Counter(
            "groundwork_rate_limit_rejections",
            "Requests rejected by the rate limiter.",
            ["limit"],
            registry=r,
        )
        self.guard_decisions = Counter(
            "groundwork_guard_decisions",
            "Input and output guard decisions.",
            ["guard", "decision"],
            registry=r,
        )
        self.ingested_documents = Counter(
            "groundwork_ingested_documents", "Documents ingested, by outcome.", ["outcome"], registry=r
        )
        self.ingested_chunks = Counter("groundwork_ingested_chunks", "Chunks written.", registry=r)
        self.errors = Counter("groundwork_errors", "Errors answered, by category.", ["category"], registry=r)
        self.spans_dropped = Counter(
            "groundwork_spans_dropped",
            "Spans dropped because an export queue was full.",
            ["exporter"],
            registry=r,
        )
        self.spans_failed = Counter(
            "groundwork_spans_export_failed", "Spans an exporter failed to export.", ["exporter"], registry=r
        )
        self.notifications = Counter(
            "groundwork_notifications",
            "Critical-error notifications, sent or suppressed.",
            ["outcome"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)

    # -- hooks of other parts ----------------------------------------------------------------------

    def cache_lookup(self, kind: str, result: str) -> None:
        self.cache.labels(kind, result).inc()

    def cache_guard_trip(self, reason: str) -> None:
        self.guard_trips.labels(reason).inc()

    def cache_error(self, operation: str) -> None:
        self.cache_errors.labels(operation).inc()

    def router_retry(self, group: str, deployment: str, category: str) -> None:
        self.retries.labels(group, deployment, category).inc()

    def router_fallback(self, group: str, to: str) -> None:
        self.fallbacks.labels(group, to).inc()

    def router_cooldown(self, group: str, deployment: str) -> None:
        self.cooldowns.labels(group, deployment).inc()

    def span_dropped(self, exporter: str, n: int) -> None:
        self.spans_dropped.labels(exporter).inc(n)

    def span_export_failed(self, exporter: str, n: int) -> None:
        self.spans_failed.labels(exporter).inc(n)

    def rate_limit_rejection(self, limit: str = "requests") -> None:
        """For the rate limiter: one request rejected."""
        self.rate_limited.labels(limit).inc()

    def guard_decision(self, guard: str, decision: str) -> None:
        """For the guards: ``decision`` is e.g. ``allow``, ``block`` or ``redact``."""
        self.guard_decisions.labels(guard, decision).inc()

    def ingestion(self, documents_ok: int, documents_failed: int, chunks: int) -> None:
        """For ingestion: documents written and failed, chunks written."""
        self.ingested_documents.labels("ok").inc(documents_ok)
        self.ingested_documents.labels("failed").inc(documents_failed)
        self.ingested_chunks.inc(chunks)
