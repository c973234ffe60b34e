"""Hybrid retrieval: vector search and BM25 keyword search, fused with reciprocal rank fusion.

The permission and collection filter is applied inside both searches (the vector index is given the
allowed ids, the keyword query joins on them), so the top-k is filled with chunks the caller may read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from groundwork.config import RetrievalSettings
from groundwork.models.base import EmbeddingModel
from groundwork.stores.protocols import ChunkFilter, DocumentStore, VectorStore
from groundwork.types import LOCAL_ADMIN, Principal, ScoredChunk


@dataclass(frozen=True, slots=True)
class Retrieval:
    """What retrieval found, with the evidence used to decide whether the documents cover the query."""

    query: str
    chunks: tuple[ScoredChunk, ...]
    best_vector_score: float
    keyword_hits: int
    timings: dict[str, float] = field(default_factory=dict)


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
    ) -> Retrieval:
        """The ``top_k`` best chunks for ``query`` that ``principal`` may read."""
        s = self.settings
        k = top_k or s.top_k
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        flt = ChunkFilter(collection=collection, groups=None if principal.is_admin else principal.groups)
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
        )[:k]
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
