"""The two model seams: :class:`ChatModel` and :class:`EmbeddingModel`.

A chat model has one required method, :meth:`ChatModel.stream`; :meth:`ChatModel.generate` collects
the stream. Decorators (router, cache, instrumentation) are themselves ``ChatModel``\\ s, so they stack.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage

Vectors = npt.NDArray[np.float32]


class ChatModel(abc.ABC):
    """A model that continues a conversation. Implement :meth:`stream`."""

    name: str = "chat"
    supports_streaming: ClassVar[bool] = True

    @abc.abstractmethod
    def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        """Yield the answer piece by piece; the last chunk carries usage and the finish reason."""

    async def generate(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Completion:
        """Return the whole answer (collects :meth:`stream`)."""
        parts: list[str] = []
        usage = Usage()
        finish = "stop"
        async for chunk in self.stream(messages, options):
            parts.append(chunk.delta)
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
        return Completion(text="".join(parts), model=self.name, usage=usage, finish_reason=finish)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release clients or threads. Optional."""


class EmbeddingModel(abc.ABC):
    """A model that maps texts to L2-normalised vectors. Implement :meth:`embed`."""

    name: str = "embedder"
    dimensions: int = 0
    max_tokens: int = 256

    @abc.abstractmethod
    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one normalised float32 row per text (shape ``len(texts) x dimensions``)."""

    async def aembed(self, texts: Sequence[str]) -> Vectors:
        """Async form of :meth:`embed`; runs it in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed, texts)

    def count_tokens(self, text: str) -> int:
        """Approximate token count used by chunking. Subclasses with a tokenizer override it."""
        return max(1, round(len(text.split()) * 1.3))
