"""Deterministic fakes shipped in the package, for tests and ``--model fake``."""

from __future__ import annotations

import hashlib
import re
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence

import numpy as np

from groundwork.models.base import ChatModel, EmbeddingModel, Vectors
from groundwork.types import GenerationOptions, Message, StreamChunk, Usage

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    ("a an and are as at be by do for from how i in is it of on or the to was what who with you").split()
)


class FakeChatModel(ChatModel):
    """A scripted chat model.

    ``enqueue("text")`` queues answers; when the queue is empty the answer comes from ``responder``
    (default: echo the last user message). Every call is recorded in ``calls``.
    """

    def __init__(
        self,
        name: str = "fake",
        responder: Callable[[Sequence[Message]], str] | None = None,
    ) -> None:
        self.name = name
        self._queue: deque[str | BaseException] = deque()
        self._responder = responder or (lambda msgs: msgs[-1].content if msgs else "")
        self.calls: list[list[Message]] = []

    def enqueue(self, *answers: str | BaseException) -> None:
        """Queue answers (or exceptions to raise) for the next calls, in order."""
        self._queue.extend(answers)

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        self.calls.append(list(messages))
        item = self._queue.popleft() if self._queue else self._responder(messages)
        if isinstance(item, BaseException):
            raise item
        opts = options or GenerationOptions()
        all_words = item.split(" ")
        words = all_words[: opts.max_tokens]
        for i, word in enumerate(words):
            yield StreamChunk(delta=word if i == 0 else " " + word)
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        finish = "length" if len(all_words) > opts.max_tokens else "stop"
        yield StreamChunk(delta="", usage=Usage(prompt_tokens, len(words)), finish_reason=finish)


class FakeEmbedder(EmbeddingModel):
    """A deterministic bag-of-words embedder: texts sharing words get similar vectors.

    Each lower-cased word (stop words skipped) hashes to a few signed dimensions; the sum is
    L2-normalised. Good enough for retrieval tests to be meaningful without loading a model.
    """

    def __init__(self, dimensions: int = 384) -> None:
        self.name = "fake-embedder"
        self.dimensions = dimensions
        self.calls = 0
        self.texts_embedded = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word in _STOP:
                    continue
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                for j in range(0, 8, 2):
                    dim = int.from_bytes(digest[j : j + 2], "little") % self.dimensions
                    out[row, dim] += 1.0 if digest[j] & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out
