"""Prometheus metrics, in a registry of their own (never the process-global default one).

:class:`Metrics` also implements the event hooks of the router (retries, fallbacks, cooldowns), the cache
(hits, misses, guard trips) and the span export queues, so those parts report without importing this.

The metrics every request updates (requests, their latency, requests in flight, model latency, time to
first token, tokens, cost, cache lookups, guard decisions) are :class:`LoopCounter`,
:class:`LoopHistogram` and :class:`LoopGauge`: plain numbers updated without a lock, read when scraped.
A ``prometheus_client`` metric takes a lock and goes through several Python calls for every update (a
histogram two locks): on a request they cost as much as the rest of the metrics and tracing together.
An update is ``series.value += n``: a load, an add and a store that CPython's GIL never separates
(it switches threads only at function entries, calls and backward jumps), so a worker thread's update
(a cache lookup in the RAG path) is not lost either. The others stay ``prometheus_client`` metrics,
updated from any thread.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_go_float: Callable[[float], str] = floatToGoString  # bucket bounds as prometheus_client writes them
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class CounterSeries:
    """One series of a :class:`LoopCounter`."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        self.value += amount


class HistogramSeries:
    """One series of a :class:`LoopHistogram`: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # le: a value on a bound falls in it
        self.sum += amount


S = TypeVar("S", CounterSeries, HistogramSeries)


class _LoopMetric(Collector, Generic[S]):
    """A metric family whose series are plain Python objects, updated without a lock.

    For the event loop's hot path: updates come from one thread at a time (an update is a few
    bytecodes that CPython's GIL does not interrupt for ints and floats). Series are created by
    :meth:`labels` (label values in ``labelnames`` order), once per label set, and kept.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def _new(self) -> S:
        raise NotImplementedError

    def labels(self, *values: object) -> S:
        """The series of these label values (created at the first call)."""
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {key}")
        series = self._series.get(key)
        if series is None:
            series = self._series.setdefault(key, self._new())
        return series

    def labels_of(self, values: tuple[str, ...]) -> S:
        """:meth:`labels` for a tuple of label values that are strings already: one dict look-up when the
        series exists (for hooks called on every request with labels that vary)."""
        series = self._series.get(values)
        return series if series is not None else self.labels(*values)

    def describe(self) -> list[Metric]:
        return []  # no duplicate-name check against the registry's other collectors


class LoopCounter(_LoopMetric[CounterSeries]):
    """A counter (exposed as ``<name>_total``, as ``prometheus_client`` names counters)."""

    def _new(self) -> CounterSeries:
        return CounterSeries()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, series in list(self._series.items()):
            family.add_metric(values, series.value, created=series.created)
        yield family


class LoopHistogram(_LoopMetric[HistogramSeries]):
    """A histogram with fixed bucket bounds."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        super().__init__(name, documentation, labelnames, registry)

    def _new(self) -> HistogramSeries:
        return HistogramSeries(self.bounds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [_go_float(b) for b in self.bounds] + ["+Inf"]
        for values, series in list(self._series.items()):
            total, running = series.sum, 0
            buckets = []
            for edge, n in zip(edges, list(series.counts), strict=True):
                running += n
                buckets.append((edge, float(running)))
            family.add_metric(list(values), buckets, total)
            labels = dict(zip(self.labelnames, values, strict=True))
            family.add_sample(f"{self.name}_created", labels, series.created)
        yield family


class LoopGauge(Collector):
    """A gauge without labels, updated with :meth:`inc` and :meth:`dec`."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.value = 0.0
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.value)

    def describe(self) -> list[Metric]:
        return []


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
        self.requests = LoopCounter(
            "groundwork_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], r
        )
        self.request_latency = LoopHistogram(
            "groundwork_http_request_duration_seconds",
            "HTTP request latency by route and status.",
            ["method", "route", "status"],
            r,
            buckets=_LATENCY,
        )
        self.in_flight = LoopGauge("groundwork_http_requests_in_flight", "Requests being served.", r)
        self.ttft = LoopHistogram(
            "groundwork_model_time_to_first_token_seconds",
            "Time to the first streamed token.",
            ["model"],
            r,
            buckets=_LATENCY,
        )
        self.model_latency = LoopHistogram(
            "groundwork_model_duration_seconds",
            "Model call latency.",
            ["model", "outcome"],
            r,
            buckets=_LATENCY,
        )
        self.tokens = LoopCounter("groundwork_tokens", "Tokens by direction.", ["model", "direction"], r)
        self.cost = LoopCounter("groundwork_cost", "Cost of model calls (deployment prices).", ["model"], r)
        self.cache = LoopCounter(
            "groundwork_cache_lookups",
            "Cache lookups by kind and result (exact|semantic|miss).",
            ["kind", "result"],
            r,
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
        self.guard_decisions = LoopCounter(
            "groundwork_guard_decisions", "Input and output guard decisions.", ["guard", "decision"], r
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
        self.cache.labels_of((kind, result)).value += 1

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
        self.guard_decisions.labels_of((guard, decision)).value += 1

    def ingestion(self, documents_ok: int, documents_failed: int, chunks: int) -> None:
        """For ingestion: documents written and failed, chunks written."""
        self.ingested_documents.labels("ok").inc(documents_ok)
        self.ingested_documents.labels("failed").inc(documents_failed)
        self.ingested_chunks.inc(chunks)
