"""Pseudo-relevance feedback and score fusion for hybrid retrieval (pure functions plus a stemmer).

Measured on Cranfield (``benchmarks/retrieval_quality.py``): one round of feedback on both sides, taken
from the *fused* first-pass list, raised nDCG@10 from 0.408 (RRF hybrid) to 0.444; fusion and BM25
parameter tuning alone were worth about +0.01 each, a MaxSim re-ranker over MiniLM token states nothing.

* keyword side (RM3): the query's words plus the ``n_terms`` stems most frequent in the feedback chunks,
  weighted ``query_weight`` : ``1 - query_weight``; FTS5's ``bm25()`` sums over the phrases of an OR
  query, so a weight is expressed by repeating the phrase (quantised to ``levels`` steps);
* vector side (Rocchio): ``normalise(q + beta * mean(feedback vectors))``, from the stored vectors, so no
  second embedding.

After the feedback round the fused list is re-ranked by score regularisation over the candidates' stored
vectors (:func:`neighbour_smoothing`): nDCG@10 0.443 -> 0.455 with z-score fusion (:func:`zscore_fusion`),
0.440 -> 0.451 with min-max. Proximity (phrase) queries on the keyword side were worth nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from groundwork.stores.sqlite import STOPWORDS, TOKEN


class Fts5Stemmer:
    """FTS5's own porter stemmer (through an in-memory FTS5 table), so terms group as FTS5 matches them."""

    CACHE_SIZE = 200_000

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._db.execute("CREATE VIRTUAL TABLE s USING fts5(x, tokenize='porter unicode61')")
        self._db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(s, 'instance')")
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, word: str) -> str:
        return self.many([word])[0]

    def many(self, words: Sequence[str]) -> list[str]:
        """The stems of ``words``, in order. Words not cached yet go through FTS5 together, one row
        each (three statements per word cost about 3 ms for the 120 words of a feedback round)."""
        missing = list(dict.fromkeys(w for w in words if w not in self._cache))
        found: dict[str, str] = {}
        if missing:
            with self._lock:
                self._db.execute("DELETE FROM s")
                self._db.executemany("INSERT INTO s(rowid, x) VALUES (?, ?)", enumerate(missing, start=1))
                # the first term of a row in the vocabulary's (byte) order, as when stemmed one by one
                rows = self._db.execute("SELECT doc, min(term) FROM v GROUP BY doc").fetchall()
            found = {missing[int(doc) - 1]: str(term) for doc, term in rows}
            for w in missing:
                stem = found.setdefault(w, w)  # a word FTS5 makes no token of stays as it is
                if len(self._cache) < self.CACHE_SIZE:
                    self._cache[w] = stem
        return [found[w] if w in found else self._cache[w] for w in words]


def minmax_fusion(lists: Sequence[tuple[Sequence[tuple[int, float]], float]]) -> list[tuple[int, float]]:
    """Weighted sum of min-max normalised scores; an id missing from a list gets nothing from it."""
    scores: dict[int, float] = {}
    for hits, weight in lists:
        if not hits or weight == 0:
            continue
        values = [s for _, s in hits]
        lo, span = min(values), max(max(values) - min(values), 1e-9)
        for i, s in hits:
            scores[i] = scores.get(i, 0.0) + weight * (s - lo) / span
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def zscore_fusion(lists: Sequence[tuple[Sequence[tuple[int, float]], float]]) -> list[tuple[int, float]]:
    """Weighted sum of standardised scores (``(s - mean) / std`` of each list, shifted so its lowest is 0).

    Unlike min-max, one outlier at either end of a list does not squeeze the others together; an id
    missing from a list gets that list's lowest score, 0. On Cranfield: nDCG@10 +0.003 over min-max alone,
    +0.006 with :func:`neighbour_smoothing` (``benchmarks/RESULTS.md``).
    """
    scores: dict[int, float] = {}
    for hits, weight in lists:
        if not hits or weight == 0:
            continue
        values = np.asarray([s for _, s in hits], dtype=np.float64)
        z = (values - values.mean()) / max(float(values.std()), 1e-9)
        z -= z.min()
        for (i, _), v in zip(hits, z.tolist(), strict=True):
            scores[i] = scores.get(i, 0.0) + weight * v
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def neighbour_smoothing(
    ranked: Sequence[tuple[int, float]],
    vectors: npt.NDArray[np.float32],
    neighbours: int,
    weight: float,
    documents: Sequence[str] | None = None,
) -> list[tuple[int, float]]:
    """Re-rank by score regularisation (Diaz, 2005): a chunk borrows the scores of its nearest neighbours.

    ``ranked`` is a fused list, best first, and ``vectors`` its chunks' normalised vectors (same order).
    Scores are min-max normalised to [0, 1]; each chunk's new score is ``(1 - weight) * own + weight *``
    the cosine-weighted mean score of its ``neighbours`` most similar chunks *in this list*. A chunk that
    resembles other strong candidates rises; a lone lexical or embedding accident sinks (the cluster
    hypothesis). The cost is one ``n x n`` product of the candidates' vectors.

    With ``documents`` (each chunk's document id), neighbours come from other documents only: the chunks
    of one long document resemble each other, and would otherwise vouch for each other (the handbook's
    holiday calendar, six near-identical chunks, pushed the leave policy out of the top 3 that way).
    """
    n = len(ranked)
    k = min(neighbours, n - 1)
    if k <= 0 or weight <= 0:
        return list(ranked)
    f = np.asarray([s for _, s in ranked], dtype=np.float64)
    f = (f - f.min()) / max(float(f.max() - f.min()), 1e-9)
    v = np.asarray(vectors, dtype=np.float32)
    # einsum, not BLAS: for a 100 x 384 product BLAS threads cost more than they give, 2-15 ms on a
    # loaded 2-core machine against about 1 ms single-threaded
    sims = np.einsum("ik,jk->ij", v, v).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    if documents is not None:
        doc = np.unique(np.asarray(documents, dtype=str), return_inverse=True)[1]
        sims[doc[:, None] == doc[None, :]] = -np.inf
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.take_along_axis(sims, nearest, axis=1).clip(min=0.0)  # -inf (same chunk or document): no vote
    borrowed = (f[nearest] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-9)
    g = (1 - weight) * f + weight * borrowed
    order = sorted(range(n), key=lambda j: (-g[j], ranked[j][0]))
    return [(ranked[j][0], float(g[j])) for j in order]


def feedback_match(
    query: str,
    feedback: Sequence[str],
    stem: Callable[[Sequence[str]], Sequence[str]],
    n_terms: int = 20,
    query_weight: float = 0.5,
    levels: int = 4,
) -> str | None:
    """An FTS5 OR query: the query's words plus an RM3 relevance model of the feedback texts.

    ``stem`` maps words to their stems, in order (:meth:`Fts5Stemmer.many`).
    """
    weights: dict[str, list[str | float]] = {}  # stem -> [surface word to match, weight]
    words = list(dict.fromkeys(w for w in (t.lower() for t in TOKEN.findall(query)) if w not in STOPWORDS))
    texts = [[t.lower() for t in TOKEN.findall(text)] for text in feedback]
    texts = [[t for t in tokens if t not in STOPWORDS and len(t) > 1 and not t.isdigit()] for tokens in texts]
    unique = list(dict.fromkeys([*words, *(t for tokens in texts for t in tokens)]))
    stems = dict(zip(unique, stem(unique), strict=True))
    for w in words:
        entry = weights.setdefault(stems[w], [w, 0.0])
        entry[1] = float(entry[1]) + query_weight / max(len(words), 1)
    relevance: dict[str, float] = {}
    surface: dict[str, str] = {}
    for tokens in texts:
        for t in tokens:
            s = stems[t]
            relevance[s] = relevance.get(s, 0.0) + 1.0 / (len(tokens) * len(feedback))
            surface.setdefault(s, t)
    top = sorted(relevance.items(), key=lambda kv: (-kv[1], kv[0]))[:n_terms]
    total = sum(p for _, p in top) or 1.0
    for s, p in top:
        entry = weights.setdefault(s, [surface[s], 0.0])
        entry[1] = float(entry[1]) + (1 - query_weight) * p / total
    if not weights:
        return None
    peak = max(float(w) for _, w in weights.values()) or 1.0
    phrases = [
        f'"{word}"' for word, w in weights.values() for _ in range(max(1, round(levels * float(w) / peak)))
    ]
    return " OR ".join(phrases)
