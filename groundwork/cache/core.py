"""Exact and semantic lookup over a :class:`~groundwork.cache.store.CacheStore`.

A lookup tries the exact key first; then, when semantic matching is on and the query is short enough,
embeds the query and compares it with the vectors of its bucket (same model, options, prompt version,
permission scope and, for answers, index version). The best candidates above the threshold are checked
by the false-hit guard (:mod:`groundwork.cache.guard`) against the query they were stored for; a trip is
counted and the next candidate tried. A failing backend never fails a request: the lookup is a miss and
the failure is counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from groundwork.cache.guard import guard_reason
from groundwork.cache.store import CacheStore, FloatArray
from groundwork.config import CacheSettings
from groundwork.errors import StorageError
from groundwork.models.base import EmbeddingModel
from groundwork.observability.tracing import Span, span

logger = logging.getLogger("groundwork.cache")

_CANDIDATES = 3


class CacheEvents(Protocol):
    """What the cache reports (the metrics implement it)."""

    def cache_lookup(self, kind: str, result: str) -> None:
        """``kind`` is ``chat`` or ``answer``; ``result`` is ``exact``, ``semantic`` or ``miss``."""

    def cache_guard_trip(self, reason: str) -> None: ...

    def cache_error(self, operation: str) -> None: ...


class NoEvents:
    """Reports nothing."""

    def cache_lookup(self, kind: str, result: str) -> None:
        return None

    def cache_guard_trip(self, reason: str) -> None:
        return None

    def cache_error(self, operation: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached payload and how it was found."""

    payload: dict[str, Any]
    kind: str
    """``exact`` or ``semantic``."""
    similarity: float = 1.0
    key: str = ""


class ResponseCache:
    """Exact + semantic lookup with scoping done by the caller's keys (see :mod:`groundwork.cache.keys`)."""

    def __init__(
        self,
        store: CacheStore,
        settings: CacheSettings,
        embedder: EmbeddingModel | None = None,
        events: CacheEvents | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.settings = settings
        self.embedder = embedder if settings.semantic else None
        self.events: CacheEvents = events or NoEvents()
        self.clock = clock

    def _semantic_on(self, query: str | None) -> bool:
        return bool(self.embedder is not None and query and len(query) <= self.settings.semantic_max_chars)

    def _embed(self, query: str) -> FloatArray:
        assert self.embedder is not None
        vector: FloatArray = self.embedder.embed([query])[0]
        return vector

    def lookup(self, kind: str, key: str, bucket: str, query: str | None) -> Hit | None:
        """The entry of ``key``, else a guarded semantic match of ``query`` in ``bucket``, else ``None``."""
        with span("cache.lookup", **{"cache.kind": kind}) as s:
            hit = self._exact(key)
            if hit is None and query is not None and self._semantic_on(query):
                hit = self._semantic(bucket, query)
            return self._report(kind, hit, s)

    async def alookup(self, kind: str, key: str, bucket: str, query: str | None) -> Hit | None:
        """:meth:`lookup` for the event loop: the exact lookup inline, a semantic one in a worker thread
        (embedding the query takes milliseconds of CPU)."""
        with span("cache.lookup", **{"cache.kind": kind}) as s:
            hit = self._exact(key)
            if hit is None and query is not None and self._semantic_on(query):
                hit = await asyncio.to_thread(self._semantic, bucket, query)
            return self._report(kind, hit, s)

    def _report(self, kind: str, hit: Hit | None, s: Span) -> Hit | None:
        result = hit.kind if hit is not None else "miss"
        s.set_attribute("cache.hit", hit is not None)
        s.set_attribute("cache.result", result)
        if hit is not None and hit.kind == "semantic":
            s.set_attribute("cache.similarity", round(hit.similarity, 4))
        self.events.cache_lookup(kind, result)
        return hit

    def _exact(self, key: str) -> Hit | None:
        try:
            raw = self.store.get(key)
        except StorageError as exc:
            self._failed("read", exc)
            return None
        return Hit(orjson.loads(raw), "exact", 1.0, key) if raw is not None else None

    def _failed(self, operation: str, exc: StorageError) -> None:
        self.events.cache_error(operation)
        logger.warning("cache %s failed; serving without the cache: %s", operation, exc)

    def _semantic(self, bucket: str, query: str) -> Hit | None:
        try:
            keys, matrix = self.store.vectors(bucket)
            if not keys:
                return None
            vector = self._embed(query)
            if matrix.shape[1] != vector.shape[0]:
                return None  # stored by another embedder
            sims = matrix @ vector
            order = np.argsort(-sims)[:_CANDIDATES]
            return self._guarded(query, [(keys[i], float(sims[i])) for i in order])
        except StorageError as exc:
            self._failed("read", exc)
            return None

    def _guarded(self, query: str, candidates: list[tuple[str, float]]) -> Hit | None:
        for key, similarity in candidates:
            if similarity < self.settings.semantic_threshold:
                break
            raw = self.store.get(key)
            if raw is None:
                self.store.delete(key)  # expired: drop its vector too
                continue
            payload = orjson.loads(raw)
            reason = guard_reason(query, str(payload.get("query", "")))
            if reason is not None:
                self.events.cache_guard_trip(reason)
                continue
            return Hit(payload, "semantic", similarity, key)
        return None

    def put(self, key: str, bucket: str, query: str | None, payload: dict[str, Any]) -> None:
        """Store ``payload`` under ``key`` (and its query's vector in ``bucket`` for semantic lookups)."""
        try:
            vector = self._embed(query) if query is not None and self._semantic_on(query) else None
            body = orjson.dumps({**payload, "query": query or ""})
            self.store.put(key, body, self.settings.ttl_s, bucket if vector is not None else None, vector)
        except StorageError as exc:
            self._failed("write", exc)

    def close(self) -> None:
        self.store.close()
