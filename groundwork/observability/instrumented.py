"""``InstrumentedModel``: a :class:`~groundwork.models.base.ChatModel` decorator that traces and counts.

Each call annotates the current span (the request's: model group, tokens in and out, cost, time to
first token) rather than opening one of its own: the router already opens one per attempt
(``model.attempt``) below it, next to the cache's ``cache.lookup``.
It feeds the metrics: latency by outcome, time to first token, tokens and cost.

A model that times its own calls (:class:`ObservableModel`: the router's model of a group) is handed
the :class:`ModelObserver` instead, and ``generate`` then returns the inner model's coroutine as it
is: no coroutine of its own around every call. That layer cost 2-3% of the gateway's CPU per request
(``benchmarks/RESULTS.md``, issue 7): every time the request resumes, it resumes through each
coroutine of the chain.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any, Protocol, runtime_checkable

from groundwork.models.base import ChatModel
from groundwork.observability.metrics import Metrics
from groundwork.observability.tracing import RecordingSpan, Span, current_span, record_error
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage


class ModelObserver:
    """The metrics and span attributes of one model group's calls (label look-ups done once)."""

    def __init__(self, name: str, metrics: Metrics) -> None:
        self.name = name
        self.latency = {o: metrics.model_latency.labels(name, o) for o in ("ok", "error")}
        self._latency_ok, self._latency_error = self.latency["ok"], self.latency["error"]
        self._tokens_in = metrics.tokens.labels(name, "in")
        self._tokens_out = metrics.tokens.labels(name, "out")
        self._cost = metrics.cost.labels(name)
        self.ttft = metrics.ttft.labels(name)

    def failed(self, seconds: float) -> None:
        """A call that raised after ``seconds``."""
        self._latency_error.observe(seconds)

    def answered(self, completion: Completion, seconds: float) -> None:
        """A call that returned ``completion`` after ``seconds``: the request's span (still open) gets
        the model, finish reason, tokens and cost; the metrics the latency, tokens and cost."""
        self._latency_ok.observe(seconds)
        usage = completion.usage
        s = current_span()
        if type(s) is RecordingSpan and not s.end_ns:  # plain writes: this runs on every request
            attributes = s.attributes
            attributes["gen_ai.request.model"] = self.name
            attributes["gen_ai.response.model"] = completion.model
            if completion.finish_reason is not None:
                attributes["gen_ai.response.finish_reason"] = completion.finish_reason
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["groundwork.cost"] = usage.cost
        self._tokens_in.value += usage.prompt_tokens
        self._tokens_out.value += usage.completion_tokens
        if usage.cost:
            self._cost.value += usage.cost

    def usage(self, s: Span, usage: Usage) -> None:
        """A stream's final usage, on span ``s`` and in the metrics."""
        if type(s) is RecordingSpan and not s.end_ns:
            attributes = s.attributes
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["groundwork.cost"] = usage.cost
        self._tokens_in.value += usage.prompt_tokens
        self._tokens_out.value += usage.completion_tokens
        if usage.cost:
            self._cost.value += usage.cost


@runtime_checkable
class ObservableModel(Protocol):
    """A model that reports each of its ``generate`` calls to a :class:`ModelObserver` itself."""

    def observe_calls(self, observer: ModelObserver) -> None: ...


class InstrumentedModel(ChatModel):
    """Traces and measures every call of ``inner``."""

    def __init__(self, inner: ChatModel, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.observer = ModelObserver(self.name, metrics)
        self._latency = self.observer.latency
        self._inner_observed = isinstance(inner, ObservableModel)
        if isinstance(inner, ObservableModel):
            inner.observe_calls(self.observer)

    def generate(  # not async: see the module's docstring
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Coroutine[Any, Any, Completion]:
        if self._inner_observed:
            return self.inner.generate(messages, options)
        return self._generate(messages, options)

    async def _generate(self, messages: Sequence[Message], options: GenerationOptions | None) -> Completion:
        observer = self.observer
        started = time.perf_counter()
        try:
            completion = await self.inner.generate(messages, options)
        except BaseException:
            observer.failed(time.perf_counter() - started)
            raise
        observer.answered(completion, time.perf_counter() - started)
        return completion

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        s = current_span()
        if s.is_recording():
            s.set_attributes({"gen_ai.request.model": self.name, "groundwork.stream": True})
        started = time.perf_counter()
        first: float | None = None
        outcome = "error"
        try:
            async for chunk in self.inner.stream(messages, options):
                if first is None and chunk.delta:
                    first = time.perf_counter() - started
                    self.observer.ttft.observe(first)
                    s.set_attribute("groundwork.time_to_first_token_ms", round(first * 1000, 3))
                if chunk.usage is not None:
                    self.observer.usage(s, chunk.usage)
                if chunk.finish_reason is not None:
                    s.set_attribute("gen_ai.response.finish_reason", chunk.finish_reason)
                yield chunk
            outcome = "ok"
        except BaseException as exc:
            record_error(s, exc)
            raise
        finally:
            self._latency[outcome].observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        await self.inner.aclose()
