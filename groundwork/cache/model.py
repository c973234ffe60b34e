"""``CachedModel``: a :class:`~groundwork.models.base.ChatModel` decorator that answers from the cache.

The key is scoped by the current :class:`~groundwork.cache.context.CachePolicy` (permission scope,
prompt version, ``Cache-Control``). A streamed response is stored as its chunks once it ended normally
(never a failed or cut stream) and replayed as a stream; a response stored from ``generate`` is replayed
word by word. A hit's usage keeps the token counts of the original call with a cost of 0.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from groundwork.cache.context import CachePolicy, current_policy
from groundwork.cache.core import Hit, ResponseCache
from groundwork.cache.keys import chat_keys, query_of
from groundwork.models.base import ChatModel
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage


def _usage_list(usage: Usage) -> list[int | float]:
    return [usage.prompt_tokens, usage.completion_tokens, usage.cost]


def _hit_usage(payload: dict[str, Any]) -> Usage:
    prompt, completion, _ = payload.get("usage") or [0, 0, 0.0]
    return Usage(int(prompt), int(completion), 0.0)


def _deltas(payload: dict[str, Any]) -> list[str]:
    deltas = payload.get("deltas")
    if isinstance(deltas, list) and deltas:
        return [str(d) for d in deltas]
    return re.findall(r"\s*\S+\s*", str(payload.get("text", ""))) or [""]


class CachedModel(ChatModel):
    """Serves repeated (and, semantically, paraphrased) requests from ``cache``."""

    def __init__(self, inner: ChatModel, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name

    def _keys(
        self, policy: CachePolicy, messages: Sequence[Message], options: GenerationOptions | None
    ) -> tuple[str, str, str]:
        key, bucket = chat_keys(self.name, messages, options, policy.scope, policy.prompt_version)
        return key, bucket, query_of(messages)

    async def _lookup(self, policy: CachePolicy, key: str, bucket: str, query: str) -> Hit | None:
        if not policy.read:
            return None
        return await self.cache.alookup("chat", key, bucket, query)

    @staticmethod
    def _mark(policy: CachePolicy, hit: Hit | None) -> None:
        policy.outcome.status = "hit" if hit is not None else "miss"
        policy.outcome.kind = hit.kind if hit is not None else None
        policy.outcome.similarity = hit.similarity if hit is not None else None

    async def generate(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Completion:
        policy = current_policy()
        if not (policy.read or policy.write):
            return await self.inner.generate(messages, options)
        key, bucket, query = self._keys(policy, messages, options)
        hit = await self._lookup(policy, key, bucket, query)
        self._mark(policy, hit)
        if hit is not None:
            p = hit.payload
            return Completion(str(p["text"]), str(p["model"]), _hit_usage(p), str(p["finish_reason"]))
        completion = await self.inner.generate(messages, options)
        if policy.write and completion.text:
            payload = {
                "text": completion.text,
                "model": completion.model,
                "usage": _usage_list(completion.usage),
                "finish_reason": completion.finish_reason,
            }
            self.cache.put(key, bucket, query, payload)
        return completion

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        # The policy is read at the first step, in the caller's context; later steps may run elsewhere.
        policy = current_policy()
        if not (policy.read or policy.write):
            async for chunk in self.inner.stream(messages, options):
                yield chunk
            return
        key, bucket, query = self._keys(policy, messages, options)
        hit = await self._lookup(policy, key, bucket, query)
        self._mark(policy, hit)
        if hit is not None:
            for delta in _deltas(hit.payload):
                yield StreamChunk(delta=delta)
            yield StreamChunk("", _hit_usage(hit.payload), str(hit.payload.get("finish_reason", "stop")))
            return
        deltas: list[str] = []
        usage = Usage()
        finish: str | None = None
        async for chunk in self.inner.stream(messages, options):
            if chunk.delta:
                deltas.append(chunk.delta)
            if chunk.usage is not None:
                usage = chunk.usage
            finish = chunk.finish_reason or finish
            yield chunk
        if policy.write and deltas and finish is not None:  # ended normally, with a final chunk
            payload = {
                "text": "".join(deltas),
                "deltas": deltas,
                "model": self.name,
                "usage": _usage_list(usage),
                "finish_reason": finish,
            }
            self.cache.put(key, bucket, query, payload)

    async def aclose(self) -> None:
        await self.inner.aclose()
