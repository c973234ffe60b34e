"""Observability at the HTTP edge: the tracing/metrics middleware, ``GET /metrics``, ``POST /v1/feedback``.

:class:`ObservabilityMiddleware` (pure ASGI) makes every request one trace: a root span named after the
method and the route template, whose trace id is the ``x-trace-id`` header and the ``trace_id`` of
answers. It counts requests and their latency by route and status, and the requests in flight; sets the
request id of the JSON logs; and sets the request's cache policy from its ``Cache-Control`` header and
its principal (resolved when the cache first needs it, so after authentication), answering with
``x-groundwork-cache: hit|miss`` whenever the cache was consulted.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from groundwork.api.context import principal_name, principal_of
from groundwork.api.errors import REQUEST_ID_KEY, RequestValidationFailed
from groundwork.api.routing import raw_router
from groundwork.api.schemas import openapi_body, parse_body
from groundwork.api.state import ApiState
from groundwork.cache.context import CachePolicy, parse_cache_control, use_policy
from groundwork.errors import GroundworkError, NotFoundError, PermissionDeniedError
from groundwork.observability import Observability, set_request_id
from groundwork.observability.store import Exchange
from groundwork.observability.tracing import RecordingSpan, reset_span, use_span
from groundwork.rag.answer import Answer
from groundwork.types import Principal

logger = logging.getLogger("groundwork.api")

TRACE_HEADER = b"x-trace-id"
CACHE_HEADER = b"x-groundwork-cache"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class ObservabilityMiddleware:
    """One trace, request metrics, log context and the cache policy per HTTP request."""

    def __init__(self, app: ASGIApp, observability: Observability | None, cache_enabled: bool) -> None:
        self.app = app
        self.obs = observability
        self.cache_enabled = cache_enabled
        self._cache: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_request_id(scope.get(REQUEST_ID_KEY))
        outcome = None
        if self.cache_enabled:
            cache_control = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"cache-control"), None
            )
            read, write = parse_cache_control(cache_control)
            outcome = use_policy(CachePolicy(lambda: principal_of(Request(scope)), read, write))
        obs = self.obs
        if obs is None:
            await self._plain(scope, receive, send, outcome)
            return
        tracing = obs.tracing
        if tracing.sample_ratio < 1.0 and not tracing.sample():  # not sampled: no span, the cheapest way
            await self._measured(scope, receive, send, outcome)
            return
        # traced (every request, by default): here rather than in a method of its own, so that each time
        # the request's coroutines resume they go through one frame of this middleware, not two
        method = scope["method"]
        root = tracing.root(method)
        status_code = 500

        async def send_traced(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                headers = list(message.get("headers", ()))
                for name, _ in headers:  # a handler that says the trace id itself (answers do)
                    if name == TRACE_HEADER:
                        break
                else:
                    # not b"%032x" %: bytes formatting is a large piece of C that nothing else on the
                    # request path runs, so it is cold (callgrind: ~24 LL misses a request); bytes.hex
                    # and str.encode are the request id's, warm
                    headers.append((TRACE_HEADER, root.trace_id.to_bytes(16, "big").hex().encode()))
                if outcome is not None and outcome.status != "bypass":
                    headers.append((CACHE_HEADER, outcome.status.encode()))
                message["headers"] = headers
            await send(message)

        in_flight = obs.metrics.in_flight
        started = time.perf_counter()
        in_flight.value += 1
        token = use_span(root)
        try:
            await self.app(scope, receive, send_traced)
        finally:
            in_flight.value -= 1
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            series = self._cache.get((method, route, status_code)) or self._series(method, route, status_code)
            series[0].value += 1
            series[1].observe(time.perf_counter() - started)
            self._annotate(root, scope, method, route, status_code, outcome)
            root.end()
            reset_span(token)

    async def _plain(self, scope: Scope, receive: Receive, send: Send, outcome: Any) -> None:
        async def send_with_cache(message: Message) -> None:
            if message["type"] == "http.response.start" and outcome is not None:
                status = getattr(outcome, "status", "bypass")
                if status != "bypass":
                    message["headers"] = [*message.get("headers", ()), (CACHE_HEADER, status.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cache)

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one label set (looked up once, then reused)."""
        key = (method, route, status)
        series = self._cache.get(key)
        if series is None:
            assert self.obs is not None
            m = self.obs.metrics
            labels = (method, route, str(status))
            series = self._cache[key] = (m.requests.labels(*labels), m.request_latency.labels(*labels))
        return series

    async def _measured(self, scope: Scope, receive: Receive, send: Send, outcome: Any) -> None:
        """An untraced request: metrics and the cache header only."""
        assert self.obs is not None
        status_code = 500

        async def send_measured(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                if outcome is not None and outcome.status != "bypass":
                    message["headers"] = [
                        *message.get("headers", ()),
                        (CACHE_HEADER, outcome.status.encode()),
                    ]
            await send(message)

        started = time.perf_counter()
        in_flight = self.obs.metrics.in_flight
        in_flight.inc()
        try:
            await self.app(scope, receive, send_measured)
        finally:
            in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            requests, latency = self._series(scope["method"], route, status_code)
            requests.inc()
            latency.observe(time.perf_counter() - started)

    def _annotate(
        self, root: RecordingSpan, scope: Scope, method: str, route: str, status_code: int, outcome: Any
    ) -> None:
        """The request span's name and attributes, set once at its end; errors counted by category."""
        root.name = f"{method} {route}"
        state = scope.get("state") or {}
        principal = state.get("principal")
        attributes = root.attributes
        attributes.update(
            {
                "http.request.method": method,
                "url.path": scope["path"],
                "http.route": route,
                "http.response.status_code": status_code,
                "groundwork.request_id": str(scope.get(REQUEST_ID_KEY, "")),
                "groundwork.principal": principal.name if isinstance(principal, Principal) else "anonymous",
            }
        )
        if outcome is not None and outcome.status != "bypass":
            attributes["cache.result"] = outcome.status
        decisions = state.get("guard_decisions")
        if decisions:  # what each input guard decided (set by the security middleware)
            attributes["guard.decisions"] = tuple([f"{d.guard}:{d.action}" for d in decisions])
        if status_code >= 500:
            root.set_error()
        category = attributes.get("error.category")
        if category:
            assert self.obs is not None
            self.obs.metrics.errors.labels(str(category)).inc()


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``: a score for the answer of a trace."""

    model_config = ConfigDict(extra="forbid")

    trace_id: str = Field(description="The trace id of the answer (32 hex digits, as in x-trace-id).")
    score: float = Field(ge=0, le=1, description="0 (bad) to 1 (good); thumbs up/down are 1 and 0.")
    comment: str = Field(default="", max_length=4000)


def readiness_problems(state: ApiState) -> list[str]:
    """Why the cache backend or the trace store is not usable (empty when both are). Blocking."""
    problems: list[str] = []
    c = state.container
    try:
        cache = c.cache
        if cache is None and c.settings.cache.enabled:
            problems.append(f"cache: the {c.settings.cache.backend} cache cannot be opened (see the logs)")
        ping = getattr(cache.store, "ping", None) if cache is not None else None
        if ping is not None:
            ping()
    except GroundworkError as exc:
        problems.append(f"cache: {exc.message} (error id {exc.error_id})")
    except OSError as exc:
        problems.append(f"cache: {type(exc).__name__}: {exc}")
    obs = c.observability
    if obs is not None and obs.settings.trace_store:
        try:
            if obs.trace_store is None:
                raise RuntimeError(obs.trace_store_error or "not opened")
            obs.trace_store.recent(1)
        except Exception as exc:
            problems.append(f"trace store: {exc}")
    return problems


def observability_router(state: ApiState) -> APIRouter:
    """``GET /metrics`` and ``POST /v1/feedback``."""
    router = raw_router(tags=["observability"])

    @router.get("/metrics", tags=["health"])
    async def metrics(_: Request) -> Response:
        """Prometheus metrics (text exposition format)."""
        obs = state.container.observability
        body = obs.metrics.render() if obs is not None else b"# observability.enabled is false\n"
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @router.post("/v1/feedback", status_code=201, openapi_extra=openapi_body(FeedbackRequest))
    async def feedback(request: Request) -> Response:
        """Score the answer of a trace (0 bad .. 1 good) with an optional comment."""
        body = parse_body(FeedbackRequest, await request.body())
        trace_id = body.trace_id.lower()
        if not _TRACE_ID.match(trace_id):
            raise RequestValidationFailed(
                "trace_id: must be 32 hex digits (the x-trace-id header)", param="trace_id"
            )
        obs = state.container.observability
        if obs is None or obs.trace_store is None:
            raise NotFoundError(
                "feedback needs observability.enabled and observability.trace_store (traces are not kept)"
            )
        principal = principal_of(request)
        store = obs.trace_store  # SQLite or PostgreSQL, and decoding export batches: not on the event loop
        roots = [s for s in await asyncio.to_thread(store.trace, trace_id) if s.parent_id is None]
        owner = roots[0].attributes.get("groundwork.principal") if roots else None
        if owner is not None and owner != principal.name and not principal.is_admin:
            raise PermissionDeniedError("this trace belongs to another principal")
        fb = await asyncio.to_thread(store.add_feedback, trace_id, body.score, body.comment, principal.name)
        content = {
            "trace_id": fb.trace_id,
            "score": fb.score,
            "comment": fb.comment,
            "known_trace": bool(roots),
        }
        return Response(orjson.dumps(content), status_code=201, media_type="application/json")

    return router


def install_observability(app: FastAPI, state: ApiState) -> None:
    """Add the middleware and routes to ``app`` (call before adding the gateway middleware)."""
    container = state.container
    obs = container.observability
    app.include_router(observability_router(state))
    app.add_middleware(
        ObservabilityMiddleware, observability=obs, cache_enabled=container.settings.cache.enabled
    )


def remember_exchange(request: Request, trace_id: str, answer: Answer, collection: str | None) -> None:
    """Keep a grounded answer with its trace (local trace store), so feedback on it can become data.

    Only what the caller was shown is kept: the question, the verified answer and the cited sources.
    """
    state = getattr(request.app.state, "groundwork", None)
    obs = state.container.observability if isinstance(state, ApiState) else None
    if obs is None or obs.trace_store is None or not trace_id:
        return
    try:
        obs.trace_store.add_exchange(
            Exchange(
                trace_id,
                principal_name(request),
                collection,
                answer.question,
                answer.text,
                answer.mode,
                tuple(c.source for c in answer.citations),
                time.time(),
            )
        )
    except GroundworkError as exc:  # the answer is served anyway; the trace store said why in the log
        logger.warning("could not keep the answer of trace %s: %s", trace_id, exc)
