"""Hybrid retrieval: vector search and BM25 keyword search, fused with reciprocal rank fusion.

The permission and collection filter is applied inside both searches (the vector index is given the
allowed ids, the keyword query joins on them), so the top-k is filled with chunks the caller may read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from groundwork.config import RetrievalSettings
from groundwork.models.base import EmbeddingModel
from groundwork.stores.protocols import ChunkFilter, DocumentStore, VectorStore
from groundwork.types import LOCAL_ADMIN, Principal, ScoredChunk


@dataclass(frozen=True, slots=True)
class Filters:
    """Metadata filters a caller may add to a search (the collection and permissions are separate)."""

    path_prefix: str | None = None
    tags: tuple[str, ...] | None = None
    modified_after: float | None = None
    modified_before: float | None = None


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What retrieval found, with the evidence used to decide whether the documents cover the query."""

    query: str
    chunks: tuple[ScoredChunk, ...]
    best_vector_score: float
    keyword_hits: int
    timings: dict[str, float] = field(default_factory=dict)


def mmr(
    relevance: npt.NDArray[np.float32], vectors: npt.NDArray[np.float32], k: int, lam: float
) -> list[int]:
    """Maximal marginal relevance: pick ``k`` rows trading relevance against similarity to those picked.

    ``score = lam * relevance - (1 - lam) * max cosine to the already selected``; ``lam = 1`` is plain
    relevance order.
    """
    chosen: list[int] = []
    if not len(relevance):
        return chosen
    rel = (relevance - relevance.min()) / max(float(relevance.max() - relevance.min()), 1e-9)
    sims = vectors @ vectors.T
    remaining = list(range(len(rel)))
    while remaining and len(chosen) < k:
        if chosen:
            redundancy = sims[np.ix_(remaining, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(remaining), dtype=np.float32)
        scores = lam * rel[remaining] - (1 - lam) * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


def reciprocal_rank_fusion(rankings: list[tuple[list[int], float]], k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked id lists: ``score(d) = sum(weight / (k + rank))``, rank starting at 1."""
    scores: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


class Retriever:
    """Vector + keyword retrieval over the embedded stores."""

    def __init__(
        self,
        documents: DocumentStore,
        vectors: VectorStore,
        embedder: EmbeddingModel,
        settings: RetrievalSettings,
    ) -> None:
        self.documents = documents
        self.vectors = vectors
        self.embedder = embedder
        self.settings = settings

    def retrieve(
        self,
        query: str,
        collection: str | None = "default",
        principal: Principal = LOCAL_ADMIN,
        top_k: int | None = None,
        filters: Filters | None = None,
    ) -> Retrieval:
        """The ``top_k`` best chunks for ``query`` that ``principal`` may read and ``filters`` admit."""
        s = self.settings
        k = top_k or s.top_k
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        f = filters or Filters()
        flt = ChunkFilter(
            collection=collection,
            groups=None if principal.is_admin else principal.groups,
            source_prefix=f.path_prefix,
            tags=f.tags,
            modified_after=f.modified_after,
            modified_before=f.modified_before,
        )
        allowed = self.documents.allowed_chunk_ids(flt)
        qvec = self.embedder.embed([query])[0]
        t1 = time.perf_counter()
        timings["embed_query"] = t1 - t0
        vector_hits = self.vectors.query(qvec, s.candidates, allowed)
        t2 = time.perf_counter()
        timings["vector_search"] = t2 - t1
        keyword_hits = self.documents.keyword_search(query, s.candidates, flt)
        t3 = time.perf_counter()
        timings["keyword_search"] = t3 - t2
        fused = reciprocal_rank_fusion(
            [
                ([i for i, _ in vector_hits], s.vector_weight),
                ([i for i, _ in keyword_hits], s.keyword_weight),
            ],
            k=s.rrf_k,
        )
        if s.mmr_lambda is not None and len(fused) > k:
            pool = fused[: max(4 * k, 20)]
            ids = np.asarray([i for i, _ in pool], dtype=np.int64)
            picked = mmr(
                np.asarray([sc for _, sc in pool], dtype=np.float32),
                self.vectors.get_vectors(ids),
                k,
                s.mmr_lambda,
            )
            fused = [pool[i] for i in picked]
        fused = fused[:k]
        chunks = self.documents.get_chunks([i for i, _ in fused])
        vscore = dict(vector_hits)
        kscore = dict(keyword_hits)
        scored = tuple(
            ScoredChunk(chunks[i], score, vscore.get(i), kscore.get(i)) for i, score in fused if i in chunks
        )
        timings["fuse"] = time.perf_counter() - t3
        return Retrieval(
            query=query,
            chunks=scored,
            best_vector_score=max((v for _, v in vector_hits), default=-1.0),
            keyword_hits=len(keyword_hits),
            timings=timings,
        )
