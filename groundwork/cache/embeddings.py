"""``CachedEmbedder``: an :class:`~groundwork.models.base.EmbeddingModel` decorator with an LRU of vectors.

An embedding depends on the text alone (no permission scope is involved), so one in-process LRU serves
every caller: the semantic cache embeds a query once for its lookup and its write, and a question
asked again is not embedded again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from groundwork.models.base import EmbeddingModel, Vectors


class CachedEmbedder(EmbeddingModel):
    """Embeds only the texts it has not seen among its last ``max_entries``."""

    def __init__(self, inner: EmbeddingModel, max_entries: int = 4096) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.max_tokens = inner.max_tokens
        self.max_entries = max_entries
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def embed(self, texts: Sequence[str]) -> Vectors:
        found: dict[int, Vectors] = {}
        with self._lock:
            for i, text in enumerate(texts):
                row = self._vectors.get(text)
                if row is not None:
                    self._vectors.move_to_end(text)
                    found[i] = row
        missing = [i for i in range(len(texts)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            with self._lock:
                for row_index, i in enumerate(missing):
                    found[i] = fresh[row_index]
                    self._vectors[texts[i]] = fresh[row_index]
                while len(self._vectors) > self.max_entries:
                    self._vectors.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return np.stack([found[i] for i in range(len(texts))]).astype(np.float32, copy=False)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)
