"""``InstrumentedModel``: a :class:`~groundwork.models.base.ChatModel` decorator that traces and counts.

Each call annotates the current span (the request's: model group, tokens in and out, cost, time to
first token) rather than opening one of its own: the router already opens one per attempt
(``model.attempt``) below it, next to the cache's ``cache.lookup``.
It feeds the metrics: latency by outcome, time to first token, tokens and cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from groundwork.models.base import ChatModel
from groundwork.observability.metrics import Metrics
from groundwork.observability.tracing import RecordingSpan, Span, current_span, record_error
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage


class InstrumentedModel(ChatModel):
    """Traces and measures every call of ``inner``."""

    def __init__(self, inner: ChatModel, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        # label lookups done once: they cost more than the increments on this hot path
        self._latency = {o: metrics.model_latency.labels(self.name, o) for o in ("ok", "error")}
        self._latency_ok, self._latency_error = self._latency["ok"], self._latency["error"]
        self._tokens_in = metrics.tokens.labels(self.name, "in")
        self._tokens_out = metrics.tokens.labels(self.name, "out")
        self._cost = metrics.cost.labels(self.name)
        self._ttft = metrics.ttft.labels(self.name)

    def _usage(self, s: Span, usage: Usage) -> None:
        if type(s) is RecordingSpan and not s.end_ns:
            attributes = s.attributes
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            attributes["groundwork.cost"] = usage.cost
        self._tokens_in.value += usage.prompt_tokens
        self._tokens_out.value += usage.completion_tokens
        if usage.cost:
            self._cost.value += usage.cost

    async def generate(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Completion:
        s = current_span()
        started = time.perf_counter()
        try:
            completion = await self.inner.generate(messages, options)
        except BaseException:
            self._latency_error.observe(time.perf_counter() - started)
            raise
        self._latency_ok.observe(time.perf_counter() - started)
        usage = completion.usage
        if type(s) is RecordingSpan and not s.end_ns:  # the request's span, still open: one C merge
            s.attributes.update(
                {
                    "gen_ai.request.model": self.name,
                    "gen_ai.response.model": completion.model,
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "groundwork.cost": usage.cost,
                }
            )
            if completion.finish_reason is not None:
                s.attributes["gen_ai.response.finish_reason"] = completion.finish_reason
        self._tokens_in.value += usage.prompt_tokens  # _usage(), without its call
        self._tokens_out.value += usage.completion_tokens
        if usage.cost:
            self._cost.value += usage.cost
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
                    self._ttft.observe(first)
                    s.set_attribute("groundwork.time_to_first_token_ms", round(first * 1000, 3))
                if chunk.usage is not None:
                    self._usage(s, chunk.usage)
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
