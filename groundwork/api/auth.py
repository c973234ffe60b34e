"""Authentication, roles, rate limits, guards and audit for every HTTP request: one pure-ASGI middleware.

In order, for each request except the public paths (health, metrics, the OpenAPI document):

1. **Authenticate** ``Authorization: Bearer gw_...`` against the key store (401 when missing, wrong,
   revoked or expired, each with a clear message and an error id) and set ``request.state.principal``,
   which routes read through :func:`groundwork.api.context.principal_of`. With ``security.auth: false``
   (dev mode, logged loudly at start) every caller is the local admin.
2. **Authorise** the route for the principal's role (403 naming the roles that may). Both checks run
   before the route, so neither can tell whether a document exists.
3. **Rate limit** per key: requests per window, tokens per window and model group (the request's text
   / 4 plus what it may generate), concurrent requests. A refusal is a 429 with ``Retry-After``; every
   response carries ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``.
4. **Guard** the request's text (:mod:`groundwork.api.guarding`) and, for non-streamed answers, the
   response's text.
5. **Audit** denied requests (401, 403) and writes (uploads, deletions, prompt and admin changes).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from groundwork.api.errors import REQUEST_ID_KEY, error_payload, error_response
from groundwork.api.guarding import (
    INPUT_GUARDED,
    OUTPUT_GUARDED,
    TOKEN_LIMITED,
    GuardedRequest,
    guard_request,
    guard_response,
)
from groundwork.container import Container
from groundwork.errors import (
    AuthError,
    GroundworkError,
    InputError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from groundwork.observability.metrics import Metrics
from groundwork.security.audit import AuditEvent
from groundwork.security.guards import GuardDecision, Guards
from groundwork.security.keys import ApiKey
from groundwork.security.permissions import ASK, FEEDBACK, is_public, require, route_permission
from groundwork.security.ratelimit import RateDecision
from groundwork.security.service import Security, key_actor
from groundwork.types import LOCAL_ADMIN, Principal

logger = logging.getLogger("groundwork.security")

_A = TypeVar("_A")
_R = TypeVar("_R")

DEV_MODE_WARNING = (
    "AUTHENTICATION IS OFF (security.auth: false): every HTTP caller is treated as the local admin and "
    "reads every document. Never expose this server; set security.auth: true and create keys with "
    "`groundwork keys create`."
)

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def rate_headers(kind: str, decision: RateDecision) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*-<kind>`` headers of a decision (``kind``: requests or tokens)."""
    return [
        (f"x-ratelimit-limit-{kind}".encode(), str(decision.limit).encode()),
        (f"x-ratelimit-remaining-{kind}".encode(), str(decision.remaining).encode()),
        (f"x-ratelimit-reset-{kind}".encode(), f"{math.ceil(decision.reset_after)}s".encode()),
    ]


def action_of(method: str, path: str) -> str:
    """The audit action of a write: ``documents.ingest``, ``documents.delete``, ``prompts.label``, ..."""
    parts = [p for p in path.split("/") if p][1:]  # without "v1"
    if parts[:1] == ["collections"]:
        return "documents.delete" if method == "DELETE" else "documents.ingest"
    if parts[:1] == ["prompts"] and "labels" in parts:
        return "prompts.label"
    return f"{parts[0] if parts else 'root'}.{method.lower()}"


async def _read_body(receive: Receive) -> bytes:
    """The whole request body (the size limit is enforced by the outer middleware)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that returns ``body`` once (the guarded, possibly redacted, body), then waits."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class SecurityMiddleware:
    """See the module docstring. Sits inside :class:`~groundwork.api.middleware.GatewayMiddleware`."""

    def __init__(self, app: ASGIApp, container: Container) -> None:
        self.app = app
        self.container = container
        if not container.settings.security.auth:
            logger.warning(DEV_MODE_WARNING)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        sec = self.container.security
        try:
            key = await self._authenticate(scope, sec)
            principal = key.principal if key is not None else LOCAL_ADMIN
            scope.setdefault("state", {})["principal"] = principal
            permission = route_permission(scope["method"], scope["path"])
            require(principal, permission, f"{scope['method']} {scope['path']}")
        except (AuthError, PermissionDeniedError) as exc:
            await self._deny(exc, scope, receive, send, sec)
            return
        await self._admitted(scope, receive, send, sec, key, permission)

    async def _authenticate(self, scope: Scope, sec: Security) -> ApiKey | None:
        if not sec.settings.auth:
            return None
        header = _header(scope, b"authorization")
        if header is None or not header.strip():
            raise AuthError(
                "missing API key: send `Authorization: Bearer <key>` (an admin creates keys with "
                "`groundwork keys create`)"
            )
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must read `Bearer <key>`")
        token = token.strip()
        # a key verified a moment ago is admitted from memory: a worker thread's hop costs more than the
        # rest of authentication (KeyStore.verified)
        return sec.keys.verified(token) or await asyncio.to_thread(sec.keys.authenticate, token)

    async def _limited(self, check: Awaitable[RateDecision | None]) -> RateDecision | None:
        """A rate-limit check; when its store is down, refuse (503) or admit, as configured."""
        try:
            return await check
        except ServiceUnavailableError as exc:
            if self.container.settings.security.rate_limits.on_backend_error == "closed":
                raise
            logger.error("rate limiting is off while its store fails (on_backend_error: open): %s", exc)
            metrics = self._metrics()
            if metrics is not None:
                metrics.rate_limit_rejection("store_down_admitted")
            return None

    def _metrics(self) -> Metrics | None:
        obs = self.container.observability
        return obs.metrics if obs is not None else None

    def _count_guards(self, decisions: Iterable[GuardDecision]) -> None:
        metrics = self._metrics()
        if metrics is not None:
            for d in decisions:
                metrics.guard_decision(d.guard, d.action)

    async def _deny(
        self, exc: GroundworkError, scope: Scope, receive: Receive, send: Send, sec: Security
    ) -> None:
        principal = scope.get("state", {}).get("principal")
        actor = principal.name if isinstance(principal, Principal) else _presented_prefix(scope)
        event = AuditEvent(
            action="request.denied",
            actor=actor,
            target=f"{scope['method']} {scope['path']}",
            outcome=str(exc.http_status),
            source=_client(scope),
            request_id=str(scope.get(REQUEST_ID_KEY, "")),
            details={"error_id": exc.error_id, "reason": exc.message},
        )
        await asyncio.to_thread(sec.record, event)
        await error_response(exc, request_id=event.request_id)(scope, receive, send)

    async def _admitted(
        self, scope: Scope, receive: Receive, send: Send, sec: Security, key: ApiKey | None, permission: str
    ) -> None:
        rid = str(scope.get(REQUEST_ID_KEY, ""))
        caller = f"key:{key.prefix}" if key is not None else f"anon:{_client(scope)}"
        limits = sec.limits_of(key)
        headers: list[tuple[bytes, bytes]] = []
        send = _with_headers(send, headers)
        entered = False
        stage = "requests"  # which limit a RateLimitError came from (for the metric)
        try:
            decision = await self._limited(sec.check_requests(caller, limits))
            if decision is not None:
                headers += rate_headers("requests", decision)
                _raise_if_denied(decision, "requests")
            guarded = GuardedRequest(b"")
            if scope["method"] == "POST" and scope["path"] in TOKEN_LIMITED | INPUT_GUARDED:
                body = await _read_body(receive)
                settings = self.container.settings
                guarded = await _run_guard(guard_request, scope["path"], body, sec.guards, settings)
                receive = _replay(guarded.body, receive)
                # for the trace (observability): what each guard decided on this request
                scope["state"]["guard_decisions"] = list(guarded.decisions)
                self._count_guards(guarded.decisions)
                stage = "tokens"
                tokens = await self._limited(sec.check_tokens(caller, guarded.group, guarded.tokens, limits))
                if tokens is not None:
                    headers += rate_headers("tokens", tokens)
                    _raise_if_denied(tokens, "tokens", guarded.tokens)
            if limits.max_concurrent is not None:
                stage = "concurrency"
                entered = await sec.counters.enter(f"conc:{caller}", limits.max_concurrent, 600.0)
                if not entered:
                    raise RateLimitError(
                        f"more than {limits.max_concurrent} concurrent requests on this key; retry when "
                        "one finishes",
                        retry_after=1.0,
                    )
        except GroundworkError as exc:
            metrics = self._metrics()
            if isinstance(exc, RateLimitError) and metrics is not None:
                metrics.rate_limit_rejection(stage)
            await error_response(exc, request_id=rid)(scope, receive, send)
            return
        status: list[int] = []
        try:
            if scope["path"] in OUTPUT_GUARDED and scope["method"] == "POST":
                send = _output_guarded(send, scope, sec, guarded.prompts, rid)
            await self.app(scope, receive, _status_of(send, status))
        finally:
            if entered:
                await sec.counters.leave(f"conc:{caller}")
            if scope["method"] in _WRITES and permission not in (ASK, FEEDBACK):
                event = AuditEvent(
                    action=action_of(scope["method"], scope["path"]),
                    actor=key_actor(key),
                    target=scope["path"],
                    outcome=str(status[0]) if status else "aborted",
                    source=_client(scope),
                    request_id=rid,
                )
                await asyncio.to_thread(sec.record, event)


GUARD_INLINE_BYTES = 8192
"""Bodies up to this size are guarded on the event loop, longer ones in a worker thread. Guarding a
request body takes about 0.16 ms per KiB (1.3 ms at 8 KiB), a response body about 0.01 ms per KiB;
a hand-off to a worker thread and back costs more than a short body: about 85 µs of CPU in the
gateway's benchmark, with four thread wake-ups."""


async def _run_guard(
    guard: Callable[[str, bytes, Guards, _A], _R], path: str, body: bytes, guards: Guards, extra: _A
) -> _R:
    """``guard(path, body, guards, extra)``: inline for a short ``body``, in a worker thread for a long
    one."""
    if len(body) > GUARD_INLINE_BYTES:
        return await asyncio.to_thread(guard, path, body, guards, extra)
    return guard(path, body, guards, extra)


def _presented_prefix(scope: Scope) -> str:
    header = _header(scope, b"authorization") or ""
    token = header.strip().partition(" ")[2].strip()
    if token.startswith("gw_") and len(token) > 11:
        return f"unknown (gw_{token[3:11]})"
    return "anonymous"


def _raise_if_denied(decision: RateDecision, kind: str, cost: int = 1) -> None:
    if decision.allowed:
        return
    if math.isinf(decision.retry_after):
        raise InputError(
            f"this request needs about {cost} tokens, more than this key's limit of {decision.limit} "
            "tokens per window: lower max_tokens or shorten the messages"
        )
    raise RateLimitError(
        f"rate limit of {decision.limit} {kind} per window reached; "
        f"retry in {math.ceil(decision.retry_after)} s",
        retry_after=decision.retry_after,
    )


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and headers:
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return wrapped


def _status_of(send: Send, status: list[int]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(int(message["status"]))
        await send(message)

    return wrapped


_ANSWER_EVENT = b"event: answer\ndata: "


async def _guard_answer_event(body: bytes, scope: Scope, sec: Security, prompts: list[str]) -> bytes:
    """The final ``answer`` event of a streamed answer, guarded like a JSON answer (an ``error`` event
    when a block policy refuses it). The draft's ``token`` events before it are not held back."""
    payload = body[len(_ANSWER_EVENT) :].rstrip(b"\n")
    try:
        guarded = await _run_guard(guard_response, scope["path"], payload, sec.guards, prompts)
    except GroundworkError as exc:
        return b"event: error\ndata: " + error_payload(exc) + b"\n\n"
    return _ANSWER_EVENT + guarded + b"\n\n"


def _output_guarded(send: Send, scope: Scope, sec: Security, prompts: list[str], rid: str) -> Send:
    """A ``send`` that holds a 200 JSON response, guards its text, then sends it; in a streamed answer,
    the final ``answer`` event is guarded (chat streams pass as they are)."""
    start: Message | None = None
    parts: list[bytes] = []
    answer_stream = False

    async def wrapped(message: Message) -> None:
        nonlocal start, answer_stream
        if message["type"] == "http.response.start":
            ctype = dict(message.get("headers", ())).get(b"content-type", b"")
            if message["status"] == 200 and ctype.startswith(b"application/json"):
                start = message
                return
            answer_stream = scope["path"] == "/v1/answers" and ctype.startswith(b"text/event-stream")
        elif message["type"] == "http.response.body" and answer_stream:
            body = message.get("body", b"")
            if body.startswith(_ANSWER_EVENT):
                message = {**message, "body": await _guard_answer_event(body, scope, sec, prompts)}
        elif message["type"] == "http.response.body" and start is not None:
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await _send_guarded(send, scope, sec, start, b"".join(parts), prompts, rid)
            return
        await send(message)

    return wrapped


async def _send_guarded(
    send: Send, scope: Scope, sec: Security, start: Message, body: bytes, prompts: list[str], rid: str
) -> None:
    try:
        guarded = await _run_guard(guard_response, scope["path"], body, sec.guards, prompts)
    except GroundworkError as exc:
        sent: list[Message] = []

        async def collect(message: Message) -> None:
            sent.append(message)

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await error_response(exc, request_id=rid)(scope, nothing, collect)
        for message in sent:
            await send(message)
        return
    headers = [(k, v) for k, v in start.get("headers", ()) if k != b"content-length"]
    headers.append((b"content-length", str(len(guarded)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": guarded, "more_body": False})
