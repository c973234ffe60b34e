"""The router: one model group -> several deployments, with balancing, retries, cooldowns and fallbacks.

:meth:`Router.model` returns a :class:`RoutedModel`, itself a :class:`~groundwork.models.base.ChatModel`,
so caching and instrumentation wrap it like any model.

Rules of one request:

* pick an available deployment of the group with the configured strategy (cooling-down deployments and
  deployments at their concurrency or per-minute limits are skipped);
* each attempt has ``attempt_timeout_s``; the whole request, fallbacks included, has ``timeout_s``;
* a retryable failure is retried (up to ``num_retries`` per group): at once on another deployment when
  one is available, else after exponential backoff with full jitter that honours ``Retry-After``;
* a request error (bad input) is raised at once, never retried; a context-window error moves to the
  ``context_window_fallbacks`` groups; an exhausted group moves to its ``fallbacks``;
* when everything failed, one :class:`~groundwork.errors.AllAttemptsFailedError` lists every attempt.

Streaming: a failure before the first token fails over transparently (nothing reached the client); a
failure after tokens were sent ends the stream with :class:`~groundwork.errors.StreamInterruptedError`
carrying an error id. A stream that ends without any text counts as a failure. Usage and cost are
counted the same way for streamed and non-streamed calls.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from groundwork.config import RouterSettings
from groundwork.errors import (
    AllAttemptsFailedError,
    ContextWindowError,
    ErrorCategory,
    GroundworkError,
    ModelTimeoutError,
    NotFoundError,
    StreamInterruptedError,
    UpstreamError,
)
from groundwork.gateway.deployment import DeploymentState
from groundwork.gateway.policy import RetryPolicy
from groundwork.gateway.strategies import STRATEGIES, Strategy
from groundwork.models.base import ChatModel
from groundwork.observability.tracing import span
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class _GroupExhausted(Exception):
    def __init__(self, last: GroundworkError) -> None:
        self.last = last


def estimate_usage(messages: Sequence[Message], text: str) -> Usage:
    """Rough token counts (4 characters a token) when a provider reports none."""
    prompt = sum(len(m.content) for m in messages) // 4 + 4 * len(messages)
    return Usage(prompt, max(1, len(text) // 4) if text else 0)


class _OpenStream:
    """A stream that produced its first text: the deployment, the iterator and what was read so far."""

    def __init__(
        self, d: DeploymentState, it: AsyncIterator[StreamChunk], head: list[StreamChunk], t0: float
    ):
        self.deployment, self.iterator, self.head, self.started = d, it, head, t0


class RouterListener(Protocol):
    """What the router reports (the metrics implement it)."""

    def router_retry(self, group: str, deployment: str, category: str) -> None: ...

    def router_fallback(self, group: str, to: str) -> None: ...

    def router_cooldown(self, group: str, deployment: str) -> None: ...


class _Silent:
    def router_retry(self, group: str, deployment: str, category: str) -> None:
        return None

    def router_fallback(self, group: str, to: str) -> None:
        return None

    def router_cooldown(self, group: str, deployment: str) -> None:
        return None


class Router:
    """Routes calls for model groups across their deployments."""

    def __init__(
        self,
        groups: Mapping[str, Sequence[DeploymentState]],
        settings: RouterSettings,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        listener: RouterListener | None = None,
    ) -> None:
        self.groups = {g: list(ds) for g, ds in groups.items()}
        self.listener: RouterListener = listener or _Silent()
        self.settings = settings
        self.policy = RetryPolicy(settings.num_retries, settings.backoff_base_s, settings.backoff_max_s)
        self.clock = clock
        self.sleep = sleep
        self._rng = rng or random.Random()
        self._strategies: dict[str, Strategy] = {g: STRATEGIES[settings.strategy](self._rng) for g in groups}
        self._models: dict[str, RoutedModel] = {}

    async def aclose(self) -> None:
        """Close every deployment's model (clients, threads)."""
        for deployments in self.groups.values():
            for d in deployments:
                await d.model.aclose()

    def model(self, group: str) -> RoutedModel:
        """The :class:`ChatModel` of a model group."""
        if group not in self.groups:
            raise NotFoundError(
                f"model {group!r} does not exist; configured model groups: {', '.join(sorted(self.groups))}"
            )
        if group not in self._models:
            self._models[group] = RoutedModel(self, group)
        return self._models[group]

    # -- the attempt loop ------------------------------------------------------------------------------

    async def run(self, group: str, attempt: Callable[[DeploymentState], Awaitable[T]], streaming: bool) -> T:
        """Run ``attempt`` on deployments of ``group`` (then its fallbacks) until one succeeds."""
        deadline = self.clock() + self.settings.timeout_s
        attempts: list[dict[str, Any]] = []
        chain = [group, *(g for g in self.settings.fallbacks.get(group, []) if g in self.groups)]
        last: GroundworkError | None = None
        i = 0
        while i < len(chain):
            try:
                more = i + 1 < len(chain) or bool(self.settings.context_window_fallbacks.get(group))
                return await self._run_group(chain[i], attempt, streaming, deadline, attempts, more)
            except ContextWindowError as exc:
                last = exc
                extra = [g for g in self.settings.context_window_fallbacks.get(group, []) if g in self.groups]
                extra = [g for g in extra if g not in chain[: i + 1]]
                if not extra:
                    break
                chain = chain[: i + 1] + extra
            except _GroupExhausted as exc:
                last = exc.last
            i += 1
            if i < len(chain):
                self.listener.router_fallback(group, chain[i])
        assert last is not None
        raise self._aggregate(group, attempts, last)

    def _aggregate(
        self, group: str, attempts: list[dict[str, Any]], last: GroundworkError
    ) -> GroundworkError:
        if not attempts or (len(attempts) == 1 and attempts[0]["id"] == last.error_id):
            return last  # no attempt (every deployment cooling down) or one: its own error is the clearest
        listing = "; ".join(
            f"{a['deployment']} ({a['group']}): {a['category']}: {a['message']}" for a in attempts
        )
        return AllAttemptsFailedError(
            f"model {group!r}: all {len(attempts)} attempts failed: {listing}", attempts=attempts, last=last
        )

    def _candidates(self, deployments: Sequence[DeploymentState], now: float) -> list[DeploymentState]:
        return [d for d in deployments if d.health.available(now) and d.has_capacity(now)]

    async def _run_group(
        self,
        group: str,
        attempt: Callable[[DeploymentState], Awaitable[T]],
        streaming: bool,
        deadline: float,
        attempts: list[dict[str, Any]],
        has_fallback: bool = False,
    ) -> T:
        deployments = self.groups[group]
        last: GroundworkError | None = None  # built only on failure: this loop is the hot path
        failures = 0
        while failures <= self.settings.num_retries:
            now = self.clock()
            if now >= deadline:
                raise _GroupExhausted(ModelTimeoutError(f"model group {group!r}: request deadline passed"))
            candidates = self._candidates(deployments, now)
            if not candidates:
                await self._wait_for_capacity(
                    deployments, now, deadline, last or _unavailable(group), has_fallback
                )
                continue
            d = self._strategies[group].pick(candidates, streaming)
            d.start(now)
            try:
                async with asyncio.timeout(min(self.settings.attempt_timeout_s, deadline - now)):
                    with span("model.attempt", group=group, deployment=d.name, attempt=failures + 1):
                        result = await attempt(d)
            except BaseException as exc:  # every failure is classified; cancellation re-raised
                d.finish()
                error = _classify(exc, d, self.settings.attempt_timeout_s)
                if error is None:
                    raise
            else:
                d.health.success()
                if not streaming:  # a stream stays in flight until it ends (RoutedModel.stream)
                    d.latency.observe(self.clock() - now, self.clock())
                    d.finish()
                return result
            failures += 1
            if error.category != ErrorCategory.INPUT:  # a bad request says nothing about the deployment
                d.failures += 1
                if d.health.failure(error, self.clock()):
                    self.listener.router_cooldown(group, d.name)
                if failures <= self.settings.num_retries:
                    self.listener.router_retry(group, d.name, str(error.category))
            attempts.append(
                {
                    "group": group,
                    "deployment": d.name,
                    "category": str(error.category),
                    "message": error.message[:300],
                    "id": error.error_id,
                    "retryable": error.retryable,
                }
            )
            if error.category == ErrorCategory.INPUT:
                raise error  # the request itself is wrong (or too long): no deployment of this group takes it
            last = error
            if failures <= self.settings.num_retries and not self._candidates(deployments, self.clock()):
                wait = self.policy.delay(failures - 1, getattr(error, "retry_after", None))
                if self.clock() + wait >= deadline:
                    break
                await self.sleep(wait)
        raise _GroupExhausted(last or _unavailable(group))

    async def _wait_for_capacity(
        self,
        deployments: Sequence[DeploymentState],
        now: float,
        deadline: float,
        last: GroundworkError,
        has_fallback: bool,
    ) -> None:
        """No deployment can take the request now.

        Busy ones (at a concurrency or per-minute limit) are waited for briefly. Cooling-down ones are
        waited for only when no fallback group remains and the cooldown ends within ``backoff_max_s``
        (a ``Retry-After`` of a few seconds, say); otherwise the group is given up at once.
        """
        busy = any(d.health.available(now) for d in deployments)  # available but at a limit
        cooling = [d.health.cooldown_until for d in deployments if d.health.cooldown_until > now]
        wake: float | None = now + 0.005 if busy else None
        if wake is None and cooling and not has_fallback:
            first = min(cooling)
            wake = first if first - now <= self.settings.backoff_max_s else None
        if wake is None or wake >= deadline:
            raise _GroupExhausted(last)
        await self.sleep(wake - now)


def _unavailable(group: str) -> GroundworkError:
    return UpstreamError(f"model group {group!r}: no deployment is available (all cooling down or busy)")


def _classify(exc: BaseException, d: DeploymentState, timeout_s: float) -> GroundworkError | None:
    """A failure of one attempt as a GroundworkError, or ``None`` for cancellation (re-raised)."""
    if isinstance(exc, GroundworkError):
        return exc
    if isinstance(exc, TimeoutError):
        return ModelTimeoutError(f"deployment {d.name} did not answer within {timeout_s:g}s")
    if isinstance(exc, Exception):  # a provider bug: treat as an upstream failure, keep the cause
        return UpstreamError(f"deployment {d.name} failed: {type(exc).__name__}: {exc}")
    return None  # CancelledError, KeyboardInterrupt: not ours to swallow


class RoutedModel(ChatModel):
    """The :class:`ChatModel` of one model group behind a :class:`Router`."""

    def __init__(self, router: Router, group: str) -> None:
        self.router = router
        self.name = group

    async def generate(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Completion:
        async def attempt(d: DeploymentState) -> Completion:
            completion = await d.model.generate(messages, options)
            if not completion.text:
                raise UpstreamError(f"deployment {d.name} returned an empty answer")
            usage = completion.usage
            if usage.total_tokens == 0:
                usage = estimate_usage(messages, completion.text)
            usage = d.priced(usage)
            d.count_tokens(usage, self.router.clock())
            return Completion(completion.text, completion.model, usage, completion.finish_reason)

        return await self.router.run(self.name, attempt, streaming=False)

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        router = self.router

        async def attempt(d: DeploymentState) -> _OpenStream:
            t0 = router.clock()
            it = aiter(d.model.stream(messages, options))
            head: list[StreamChunk] = []
            async for chunk in it:  # read until the first text: failures so far are retried
                head.append(chunk)
                if chunk.delta:
                    d.ttft.observe(router.clock() - t0, router.clock())
                    return _OpenStream(d, it, head, t0)
            raise UpstreamError(f"deployment {d.name} returned an empty stream")

        opened = await router.run(self.name, attempt, streaming=True)
        d = opened.deployment
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        try:
            pending = list(opened.head)
            while True:
                if pending:
                    chunk = pending.pop(0)
                else:
                    try:
                        async with asyncio.timeout(router.settings.attempt_timeout_s):
                            chunk = await anext(opened.iterator)
                    except StopAsyncIteration:
                        break
                if chunk.usage is not None and chunk.usage.total_tokens:
                    usage = chunk.usage
                finish = chunk.finish_reason or finish
                if chunk.delta:  # usage and finish reason are re-emitted, priced, in the last chunk
                    parts.append(chunk.delta)
                    yield StreamChunk(delta=chunk.delta)
        except BaseException as exc:
            error = _classify(exc, d, router.settings.attempt_timeout_s)
            if error is None:
                raise
            d.failures += 1
            if d.health.failure(error, router.clock()):
                router.listener.router_cooldown(self.name, d.name)
            raise StreamInterruptedError(
                f"the stream from {d.name} failed after {len(parts)} chunks: {error.message}",
                details={"deployment": d.name, "cause_id": error.error_id, "cause": str(error.category)},
            ) from exc
        finally:
            d.finish()
        d.latency.observe(router.clock() - opened.started, router.clock())
        final = d.priced(usage or estimate_usage(messages, "".join(parts)))
        d.count_tokens(final, router.clock())
        yield StreamChunk(delta="", usage=final, finish_reason=finish)
