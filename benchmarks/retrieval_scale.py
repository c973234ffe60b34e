"""Retrieval latency at scale on the embedded store (SQLite + tantivy + faiss), 100k to 1M chunks.

    .venv/bin/python benchmarks/retrieval_scale.py --sizes 100000,1000000 [--queries 200]
        [--fallback-size 500000] [--budget-minutes 25] [--max-wait 1200] [--tmp /tmp]

Synthetic corpus, deterministic (``--seed``):

* vectors: 384-d, L2-normalised, from 1,000 Gaussian clusters with a shared mean direction and an
  anisotropic noise spectrum (variance of the i-th of 384 random orthogonal directions ~ i^-1.1). The
  parameters were chosen to match real all-MiniLM-L6-v2 embeddings of the Cranfield abstracts on 3,000
  points: nearest-neighbour cosine median ~0.78 (real 0.76), 10th neighbour ~0.61 (0.66), random pairs
  ~0.29 (0.28), 71 principal components for 80% of the variance (76). The script prints these statistics.
  Uniform random vectors would make HNSW look broken (see shared/MEASUREMENTS.md).
* texts: 40 words per chunk drawn from a Zipf(1.0) vocabulary of 20,000 words (``w00000`` ...);
  documents of 100 chunks, all in collection ``default``; 1% of the documents carry the tag ``sel``.
* queries: ``--queries`` vectors drawn like the data around random cluster centres, and query texts of
  3-5 words drawn from the same Zipf law without its 100 most frequent words.

Each size runs in two child processes so that each reports its own peak RSS:

* ``build``: ``SQLiteDocumentStore.write_document`` per document, ``FaissVectorStore.upsert`` per
  document (as the ingestor does), ``save``; exact top-10 ground truth with numpy, computed on the fly.
* ``serve``: ``Container(Settings.load(None, data_dir=...), embedder=stub)``, i.e. the store opened and
  the index loaded with ``load_or_rebuild`` as the application does; the first unfiltered query builds
  the HNSW graph (timed as part of the build). Then, ``--queries`` timed queries each after 5 untimed ones:
  ``Retriever.retrieve(text, collection, top_k=10)`` with a stub embedder that returns the precomputed
  query vector (so the query embedding is NOT included; MiniLM's cost is measured separately), without a
  filter (``collection=None``; again with ``feedback_docs=0`` when the settings have that pseudo-relevance
  feedback pass), with the collection filter (admits 100% of rows) and with a selective
  filter (tag ``sel``: 1% of documents); and the pieces alone: ``vectors.query(q, 30)`` and
  ``documents.keyword_search(text, 30, ChunkFilter())``. Recall@10 of ``vectors.query(q, 10)`` against
  exact brute force, unfiltered, through the collection filter (first 50 queries) and the 1% filter.
* ``embed``: all-MiniLM-L6-v2 (``MiniLMEmbedder``) loaded and warmed, then ``embed([query])`` timed on
  100 short queries (the handbook's questions and their content words).

Before each child starts the script waits until the 1-minute load average is below 1.5 (polled every
30 s, at most ``--max-wait`` seconds, then it runs anyway and says so): other benchmarks share the machine.
After the first size, the next one's wall time is estimated (linear in size, +15%); if it exceeds
``--budget-minutes``, ``--fallback-size`` runs instead and the report says so.

``--data-dir DIR`` keeps each size's data in ``DIR/<size>`` instead of a temp dir, and a later run with
the same ``DIR`` (and ``--seed``, ``--queries``, ``--per-doc``) reuses it instead of building again (the
report lists the reused build's figures and says so). The serving process then saves the HNSW graph it
built, so the next run loads it (the 1M graph takes about 9 minutes to build). The store is opened by the
current code, so a schema migration runs on it as it would on a user's data dir.

``--two-collections`` (with ``--data-dir``) measures only the two-collection case: each size's built data
dir is copied once to ``DIR/<size>-two`` and a collection ``other`` with ``--two-share`` (1%) more chunks is
added to it; then ``retrieve`` with the big collection's filter, its ids passed as their complement (now)
and as the id list (``COMPLEMENT_SHARE = 1.0``, before), and unfiltered, each query running the three in
turn; the report compares their top-10s.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from _common import peak_rss_mb, query_vector_embedder, wait_for_quiet  # benchmarks/_common.py

DIM = 384
CLUSTERS = 1_000
VOCAB = 20_000
WORDS_PER_CHUNK = 40
ZIPF_S = 1.0
MEAN_WEIGHT, NOISE, SPECTRUM = 0.8, 0.8, 0.55
TOP = 10
CANDIDATES = 30  # RetrievalSettings.candidates default: what retrieve() asks each retriever for
WARMUP = 5
BLOCK_DOCS = 100  # documents generated per block

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


# -- synthetic data ------------------------------------------------------------------------------------


def _normalise(x: F32) -> F32:
    out: F32 = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


class Generator:
    """Deterministic vectors (clustered, anisotropic) and Zipf texts."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.mean = _normalise(rng.standard_normal(DIM).astype(np.float32))
        basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        spec = (np.arange(DIM) + 1.0) ** -SPECTRUM
        self.spec = (spec / np.sqrt((spec**2).sum())).astype(np.float32)
        self.basis = basis.astype(np.float32)
        raw = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32) * (self.spec * np.sqrt(DIM))
        self.centres = _normalise(raw @ self.basis)
        p = 1.0 / (np.arange(VOCAB) + 1.0) ** ZIPF_S
        self.word_p = p / p.sum()
        tail = p.copy()
        tail[:100] = 0.0
        self.query_word_p = tail / tail.sum()
        self.vocab = np.array([f"w{i:05d}" for i in range(VOCAB)], dtype=object)

    def vectors(self, rng: np.random.Generator, n: int) -> F32:
        labels = rng.integers(0, CLUSTERS, n)
        noise = (rng.standard_normal((n, DIM)).astype(np.float32) * self.spec) @ self.basis
        return _normalise(MEAN_WEIGHT * self.mean + self.centres[labels] + NOISE * noise)

    def texts(self, rng: np.random.Generator, n: int) -> list[str]:
        words = rng.choice(VOCAB, size=(n, WORDS_PER_CHUNK), p=self.word_p)
        return [" ".join(self.vocab[row]) for row in words]

    def block(self, index: int, n: int) -> tuple[F32, list[str]]:
        rng = np.random.default_rng([self.seed, 1, index])
        return self.vectors(rng, n), self.texts(rng, n)

    def queries(self, n: int) -> tuple[F32, list[str]]:
        rng = np.random.default_rng([self.seed, 2])
        vecs = self.vectors(rng, n)
        lengths = rng.integers(3, 6, n)
        texts = [" ".join(self.vocab[rng.choice(VOCAB, size=k, p=self.query_word_p)]) for k in lengths]
        return vecs, texts

    def stats(self) -> dict[str, float]:
        """Neighbourhood statistics of 3,000 generated points (compare with real MiniLM embeddings)."""
        x = self.vectors(np.random.default_rng([self.seed, 3]), 3000)
        sims = x @ x.T
        np.fill_diagonal(sims, -1.0)
        ranked = -np.sort(-sims, axis=1)
        centred = x - x.mean(0)
        ev = np.linalg.svd(centred, compute_uv=False) ** 2
        cum = np.cumsum(ev / ev.sum())
        return {
            "nn1_cos_median": float(np.median(ranked[:, 0])),
            "nn10_cos_median": float(np.median(ranked[:, 9])),
            "random_pair_cos_mean": float(sims[sims > -1].mean()),
            "pcs_for_80pct": int(np.searchsorted(cum, 0.8)),
        }


class RunningTopK:
    """Exact top-k by inner product over vectors seen block by block."""

    def __init__(self, queries: F32, k: int) -> None:
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)

    def add(self, ids: I64, vecs: F32) -> None:
        if not len(ids):
            return
        scores = np.concatenate([self.scores, self.queries @ vecs.T], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], axis=1)
        top = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.ids = np.take_along_axis(all_ids, top, axis=1)


# -- child phases --------------------------------------------------------------------------------------


def synthetic_document(
    doc_id: str,
    collection: str,
    source: str,
    title: str,
    texts: Sequence[str],
    tags: tuple[str, ...] = (),
    *,
    sections: bool = True,
) -> tuple[Any, list[Any]]:
    """A generated document and its chunks: with ``sections``, chunks in sections of ten at their offsets
    in the text (the main build); without, no headings and every span from 0 (the second collection)."""
    from groundwork.types import Chunk, Document

    doc = Document(
        id=doc_id,
        collection=collection,
        source=source,
        title=title,
        content_hash=hashlib.sha256(doc_id.encode()).hexdigest(),
        media_type="text/plain",
        chunk_count=len(texts),
        ingested_at=time.time(),
        tags=tags,
        modified_at=1.7e9,
    )
    chunks, offset = [], 0
    for n, text in enumerate(texts):
        start = offset if sections else 0
        chunks.append(
            Chunk(
                id=f"{doc_id}-{n}",
                document_id=doc_id,
                collection=collection,
                ordinal=n,
                text=text,
                heading_path=(f"Section {n // 10 + 1}",) if sections else (),
                start=start,
                end=start + len(text),
            )
        )
        offset += len(text) + 2
    return doc, chunks


def phase_build(data_dir: Path, size: int, n_queries: int, per_doc: int, seed: int) -> dict[str, Any]:
    from groundwork.stores.faiss_index import FaissVectorStore
    from groundwork.stores.sqlite import SQLiteDocumentStore

    gen = Generator(seed)
    qvecs, qtexts = gen.queries(n_queries)
    truth, truth_sel = RunningTopK(qvecs, TOP), RunningTopK(qvecs, TOP)
    store = SQLiteDocumentStore(data_dir / "groundwork.sqlite3")
    index = FaissVectorStore(DIM)  # settings' defaults: exact below 20,000 rows, HNSW M=32 efSearch=128
    n_docs = size // per_doc
    t_gen = t_sql = t_upsert = t_truth = 0.0
    sel_docs = sel_chunks = 0
    started = time.perf_counter()
    for block in range(0, n_docs, BLOCK_DOCS):
        docs_here = min(BLOCK_DOCS, n_docs - block)
        t0 = time.perf_counter()
        vecs, texts = gen.block(block // BLOCK_DOCS, docs_here * per_doc)
        t_gen += time.perf_counter() - t0
        block_ids: list[I64] = []
        for j in range(docs_here):
            d = block + j
            doc_id = f"doc{d:07d}"
            selective = d % 100 == 0
            doc, chunks = synthetic_document(
                doc_id,
                "default",
                f"/synthetic/{d // 1000:04d}/{doc_id}.txt",
                f"Document {d}",
                texts[j * per_doc : (j + 1) * per_doc],
                ("sel",) if selective else (),
            )
            dvecs = vecs[j * per_doc : (j + 1) * per_doc]
            t0 = time.perf_counter()
            ids = store.write_document(doc, chunks, dvecs)
            t1 = time.perf_counter()
            index.upsert(ids, dvecs)
            t_upsert += time.perf_counter() - t1
            t_sql += t1 - t0
            block_ids.append(ids)
            if selective:
                t0 = time.perf_counter()
                truth_sel.add(ids, dvecs)
                t_truth += time.perf_counter() - t0
                sel_docs, sel_chunks = sel_docs + 1, sel_chunks + len(ids)
        t0 = time.perf_counter()
        truth.add(np.concatenate(block_ids), vecs)
        t_truth += time.perf_counter() - t0
        if (block // BLOCK_DOCS) % 20 == 19:
            done = block + docs_here
            print(
                f"  built {done * per_doc:,} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr
            )
    t0 = time.perf_counter()
    index.save(data_dir / "index", store.generation)
    t_save = time.perf_counter() - t0
    store.close()
    out = data_dir / "bench"
    out.mkdir(exist_ok=True)
    np.save(out / "queries.npy", qvecs)
    np.save(out / "truth.npy", truth.ids)
    np.save(out / "truth_sel.npy", truth_sel.ids)
    (out / "query_texts.json").write_text(json.dumps(qtexts))
    files = {
        p.name: p.stat().st_size for p in [*data_dir.glob("groundwork.sqlite3*"), *data_dir.glob("index/*")]
    }
    return {
        "chunks": n_docs * per_doc,
        "documents": n_docs,
        "selective_documents": sel_docs,
        "selective_chunks": sel_chunks,
        "generate_s": t_gen,
        "sqlite_write_s": t_sql,
        "faiss_upsert_s": t_upsert,
        "faiss_save_s": t_save,
        "ground_truth_s": t_truth,
        "build_wall_s": time.perf_counter() - started,
        "sqlite_mb": sum(v for k, v in files.items() if k.startswith("groundwork")) / 2**20,
        "index_mb": sum(v for k, v in files.items() if k.startswith("vectors")) / 2**20,
        "peak_rss_mb": peak_rss_mb(),
        "data_stats": gen.stats(),
    }


PATH_SECONDS = [120.0]
"""Time budget of one path's timed queries (``--path-seconds``); at least ``MIN_QUERIES`` run."""
MIN_QUERIES = 20


def _latencies(call: Callable[[int], object], n: int) -> list[float]:
    """Milliseconds per call, after ``WARMUP`` untimed calls; stops early once over the time budget."""
    for i in range(min(WARMUP, n)):
        call(i)
    gc.collect()
    out: list[float] = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
        if len(out) >= MIN_QUERIES and time.perf_counter() - started > PATH_SECONDS[0]:
            break
    return out


def _recall(found: Sequence[Sequence[int]], truth: I64) -> float:
    hits = sum(len(set(f[:TOP]) & set(t.tolist())) for f, t in zip(found, truth, strict=False))
    return hits / (TOP * len(found))


def phase_serve(data_dir: Path, keep: bool = False) -> dict[str, Any]:
    from groundwork.config import Settings
    from groundwork.container import Container
    from groundwork.rag.retrieval import Filters, Retrieval
    from groundwork.stores.protocols import ChunkFilter

    bench = data_dir / "bench"
    qvecs = np.load(bench / "queries.npy")
    truth, truth_sel = np.load(bench / "truth.npy"), np.load(bench / "truth_sel.npy")
    qtexts: list[str] = json.loads((bench / "query_texts.json").read_text())
    n = len(qtexts)
    stub = query_vector_embedder(DIM)
    c = Container(Settings.load(None, data_dir=data_dir, embeddings={"provider": "fake"}), embedder=stub)
    res: dict[str, Any] = {"queries": n}
    t0 = time.perf_counter()
    documents = c.documents
    res["open_sqlite_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vectors = c.vectors  # FaissVectorStore.load_or_rebuild
    res["load_or_rebuild_s"] = time.perf_counter() - t0
    res["index_rows"] = len(vectors)
    res["rss_after_load_mb"] = peak_rss_mb()
    res["hnsw_loaded"] = getattr(vectors, "_hnsw", None) is not None  # saved by an earlier run
    t0 = time.perf_counter()
    vectors.query(qvecs[0], TOP)  # first unfiltered query above exact_search_below: builds the graph
    res["hnsw_build_s"] = time.perf_counter() - t0
    res["rss_after_hnsw_mb"] = peak_rss_mb()
    if keep and not res["hnsw_loaded"]:
        vectors.flush(documents.generation)  # the next run over this data dir loads the graph
    retriever = c.retriever

    lat: dict[str, list[float]] = {}
    lat["vector query alone (k=30, no filter)"] = _latencies(lambda i: vectors.query(qvecs[i], CANDIDATES), n)
    lat["keyword search alone (k=30, no filter)"] = _latencies(
        lambda i: documents.keyword_search(qtexts[i], CANDIDATES, ChunkFilter()), n
    )
    breakdowns: dict[str, list[dict[str, float]]] = {}

    def timed_retrieve(label: str, collection: str | None, filters: Filters | None) -> None:
        parts: list[dict[str, float]] = []

        def call(i: int) -> Retrieval:
            stub.vector = qvecs[i]
            r = retriever.retrieve(qtexts[i], collection, top_k=TOP, filters=filters)
            parts.append(r.timings)
            return r

        lat[label] = _latencies(call, n)
        breakdowns[label] = parts[-len(lat[label]) :]
        print(f"  {label}: p50 {statistics.median(lat[label]):.1f} ms", file=sys.stderr)

    timed_retrieve("retrieve(text, None, top_k=10): no filter", None, None)
    if getattr(retriever.settings, "feedback_docs", 0):
        # the same without the pseudo-relevance feedback pass (RetrievalSettings.feedback_docs = 0)
        default_settings = retriever.settings
        retriever.settings = default_settings.model_copy(update={"feedback_docs": 0})
        timed_retrieve("retrieve(text, None, top_k=10): no filter, feedback_docs=0", None, None)
        retriever.settings = default_settings
    timed_retrieve("retrieve(text, 'default', top_k=10): collection filter (100% of rows)", "default", None)
    timed_retrieve(
        "retrieve(text, 'default', top_k=10, tags=sel): selective filter (1% of docs)",
        "default",
        Filters(tags=("sel",)),
    )
    res["feedback_docs"] = getattr(retriever.settings, "feedback_docs", None)
    res["latency_ms"] = lat
    res["breakdown_ms"] = {
        label: {
            k: 1000 * statistics.median(p.get(k, 0.0) for p in parts) for k in {k for p in parts for k in p}
        }
        for label, parts in breakdowns.items()
    }
    res["keyword_hits_median"] = statistics.median(
        len(documents.keyword_search(qtexts[i], 1_000_000, ChunkFilter())) for i in range(min(n, 20))
    )

    found = [[i for i, _ in vectors.query(qvecs[i], TOP)] for i in range(n)]
    res["recall_unfiltered"] = _recall(found, truth)
    allowed_all = documents.allowed_chunk_ids(ChunkFilter(collection="default"))
    m = min(n, 50)
    found = [[i for i, _ in vectors.query(qvecs[i], TOP, allowed_all)] for i in range(m)]
    res["recall_collection"] = _recall(found, truth[:m])
    res["recall_collection_queries"] = m
    allowed_sel = documents.allowed_chunk_ids(ChunkFilter(collection="default", tags=("sel",)))
    res["selective_allowed_rows"] = len(allowed_sel) if allowed_sel is not None else 0
    found = [[i for i, _ in vectors.query(qvecs[i], TOP, allowed_sel)] for i in range(n)]
    res["recall_selective"] = _recall(found, truth_sel)
    res["peak_rss_mb"] = peak_rss_mb()
    c.close()
    return res


TWO_VARIANTS = {
    "no filter": (None, 0.5),
    "big collection's filter, ids as their complement (now)": ("default", 0.5),
    "big collection's filter, ids as a list (before)": ("default", 1.0),
}
"""The two-collection phase's paths: ``(collection, SQLiteDocumentStore.COMPLEMENT_SHARE)``; 1.0 never
passes the complement, i.e. the id list every filter gave before."""


def phase_two(data_dir: Path, seed: int, per_doc: int, share: float, n_queries: int) -> dict[str, Any]:
    """A second collection ``other`` with ``share`` of the chunks next to ``default``, then ``retrieve``
    with the big collection's filter in both representations and unfiltered, interleaved query by query
    (the order rotates), wall and thread CPU time per call, and the hits compared."""
    from groundwork.config import Settings
    from groundwork.container import Container
    from groundwork.stores.protocols import AllExcept, ChunkFilter

    bench = data_dir / "bench"
    qvecs = np.load(bench / "queries.npy")
    qtexts: list[str] = json.loads((bench / "query_texts.json").read_text())
    stub = query_vector_embedder(DIM)
    c = Container(Settings.load(None, data_dir=data_dir, embeddings={"provider": "fake"}), embedder=stub)
    documents, vectors = c.documents, c.vectors
    vectors.query(qvecs[0], TOP)  # builds the graph if it was not saved
    res: dict[str, Any] = {}
    if set(documents.collections()) == {"default"}:
        big = sum(d.chunk_count for d in documents.list_documents("default"))
        gen = Generator(seed)
        t0 = time.perf_counter()
        for d in range(max(1, round(big * share / per_doc))):
            vecs, texts = gen.block(1_000_000 + d, per_doc)  # blocks the build never drew
            doc_id = f"other{d:06d}"
            doc, chunks = synthetic_document(
                doc_id, "other", f"/other/{doc_id}.txt", f"Other {d}", texts, sections=False
            )
            vectors.upsert(documents.write_document(doc, chunks, vecs), vecs)
        vectors.flush(documents.generation)
        res["added_s"] = time.perf_counter() - t0
    res["collections"] = {k: v for k, v in documents.collections().items()}
    res["chunks"] = len(vectors)
    complement = documents.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert isinstance(complement, AllExcept)
    res["admitted"], res["excluded"] = len(complement), len(complement.excluded)
    retriever = c.retriever
    lat: dict[str, list[float]] = {label: [] for label in TWO_VARIANTS}
    cpu: dict[str, list[float]] = {label: [] for label in TWO_VARIANTS}
    parts: dict[str, list[dict[str, float]]] = {label: [] for label in TWO_VARIANTS}
    labels = list(TWO_VARIANTS)
    differ = 0
    started = time.perf_counter()
    for i in range(n_queries):
        stub.vector = qvecs[i]
        hits: dict[str, list[tuple[str, float]]] = {}
        for j in range(len(labels)):
            label = labels[(i + j) % len(labels)]
            collection, documents.COMPLEMENT_SHARE = TWO_VARIANTS[label]  # type: ignore[misc]
            t0, c0 = time.perf_counter(), time.thread_time()
            r = retriever.retrieve(qtexts[i], collection, top_k=TOP)
            if i >= WARMUP:
                lat[label].append((time.perf_counter() - t0) * 1000)
                cpu[label].append((time.thread_time() - c0) * 1000)
                parts[label].append(r.timings)
            hits[label] = [(h.chunk.id, round(h.score, 6)) for h in r.chunks]
        differ += hits[labels[1]] != hits[labels[2]]
        if i >= WARMUP + MIN_QUERIES and time.perf_counter() - started > PATH_SECONDS[0]:
            break
    res["queries"] = len(lat[labels[0]])
    res["results_differ"] = differ
    res["latency_ms"], res["cpu_ms"] = lat, cpu
    res["breakdown_ms"] = {
        label: {
            k: 1000 * statistics.median(p.get(k, 0.0) for p in ps) for k in ("embed_query", "vector_search")
        }
        for label, ps in parts.items()
    }
    res["peak_rss_mb"] = peak_rss_mb()
    c.close()
    return res


def run_two(size: int, args: argparse.Namespace) -> str:
    """The two-collection case on a copy of the size's data dir (``DATA_DIR/<size>-two``, kept)."""
    if not args.data_dir:
        raise SystemExit("--two-collections needs --data-dir (a built single-collection data dir is copied)")
    source, data_dir = Path(args.data_dir) / str(size), Path(args.data_dir) / f"{size}-two"
    if not data_dir.exists():
        if not (source / "bench" / "build.json").exists():
            raise SystemExit(f"{source} is not built: run without --two-collections first")
        shutil.copytree(source, data_dir)
    note = wait_for_quiet(max_wait_s=args.max_wait)
    print(f"[{size:,}] two collections ({note})", file=sys.stderr)
    r = run_child(
        [
            *("--phase", "two", "--dir", str(data_dir), "--per-doc", str(args.per_doc)),
            *("--seed", str(args.seed), "--queries", str(args.queries)),
            *("--path-seconds", str(args.path_seconds), "--two-share", str(args.two_share)),
        ]
    )
    lines = [
        f"{size:,} chunks in `default` + {r['collections'].get('other', 0):,} documents in `other`"
        f" ({r['chunks']:,} chunks in all; the filter admits {r['admitted']:,}, excludes {r['excluded']:,});"
        f" {r['queries']} queries, each path in turn (rotating order); {note}."
        f" Top-10 differing between the two representations: {r['results_differ']} queries.",
        "",
        "| `retrieve(text, collection, top_k=10)` | wall p50 / p99, ms | thread CPU p50, ms"
        " | filter ids + stub embed, ms | vector search, ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, ms in r["latency_ms"].items():
        b = r["breakdown_ms"][label]
        lines.append(
            f"| {label} | {pct(ms, 50):.1f} / {pct(ms, 99):.1f} | {pct(r['cpu_ms'][label], 50):.1f}"
            f" | {b['embed_query']:.1f} | {b['vector_search']:.1f} |"
        )
    return "\n".join(lines)


SHORT_QUERY_STOP = frozenset("a an the do does i my of to in on for is are what how when who can if".split())


def phase_embed(n: int) -> dict[str, Any]:
    import torch
    import yaml

    from groundwork.models.embedded import MiniLMEmbedder
    from groundwork.samples import handbook_dir

    raw = yaml.safe_load((handbook_dir().parent / "handbook_questions.yaml").read_text())
    questions = [q["question"] for q in raw["answerable"]] + [q["question"] for q in raw["unanswerable"]]
    keywords = [
        " ".join(w for w in q.rstrip("?").split() if w.lower() not in SHORT_QUERY_STOP) for q in questions
    ]
    queries = (questions + keywords)[:n]
    emb = MiniLMEmbedder()
    t0 = time.perf_counter()
    emb.embed(["warm up"])
    load_s = time.perf_counter() - t0
    lat = _latencies(lambda i: emb.embed([queries[i]]), len(queries))
    tokens = [emb.count_tokens(q) for q in queries]
    return {
        "queries": len(queries),
        "load_s": load_s,
        "latency_ms": lat,
        "tokens_median": statistics.median(tokens),
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
    }


# -- orchestration ---------------------------------------------------------------------------------------


def run_child(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@dataclass
class SizeResult:
    size: int
    build: dict[str, Any]
    serve: dict[str, Any]
    wall_s: float
    load_notes: list[str]


def run_size(size: int, args: argparse.Namespace) -> SizeResult:
    notes: list[str] = []
    if args.data_dir:
        data_dir = Path(args.data_dir) / str(size)
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix=f"gw-retrieval-{size}-", dir=args.tmp))
    build_params = {"size": size, "queries": args.queries, "per_doc": args.per_doc, "seed": args.seed}
    kept = data_dir / "bench" / "build.json"
    waited = 0.0
    try:
        started = time.perf_counter()
        build: dict[str, Any] | None = None
        if kept.exists():
            saved = json.loads(kept.read_text())
            if saved.get("params") == build_params:
                build = saved["build"]
                notes.append(f"build: reused {data_dir} (built {saved['built_at']})")
                print(f"[{size:,}] {notes[-1]}", file=sys.stderr)
        if build is None:
            if any(data_dir.iterdir()):
                raise SystemExit(f"{data_dir} holds other data: remove it or pass another --data-dir")
            notes.append("build: " + wait_for_quiet(max_wait_s=args.max_wait))
            started = time.perf_counter()
            print(f"[{size:,}] build ({notes[-1]})", file=sys.stderr)
            build = run_child(
                [
                    *("--phase", "build", "--dir", str(data_dir), "--size", str(size)),
                    *("--queries", str(args.queries), "--per-doc", str(args.per_doc)),
                    *("--seed", str(args.seed), "--path-seconds", str(args.path_seconds)),
                ]
            )
            print(f"[{size:,}] built in {build['build_wall_s']:.0f}s", file=sys.stderr)
            if args.data_dir:
                built_at = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
                kept.write_text(json.dumps({"params": build_params, "built_at": built_at, "build": build}))
        t0 = time.perf_counter()
        notes.append("serve: " + wait_for_quiet(max_wait_s=args.max_wait))
        waited += time.perf_counter() - t0
        print(f"[{size:,}] serve ({notes[-1]})", file=sys.stderr)
        serve = run_child(
            [
                *("--phase", "serve", "--dir", str(data_dir), "--path-seconds", str(args.path_seconds)),
                *(["--keep"] if args.data_dir else []),
            ]
        )
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    return SizeResult(size, build, serve, time.perf_counter() - started - waited, notes)


def report(results: list[SizeResult], embed: dict[str, Any] | None, notes: list[str]) -> str:
    lines: list[str] = []
    cols = " | ".join(f"{r.size:,} chunks" for r in results)
    sep = "|---|" + "---:|" * len(results)

    def row(label: str, fn: Callable[[SizeResult], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(r) for r in results) + " |")

    lines += ["Build (seconds; build process, then the serving process)", "", f"| step | {cols} |", sep]
    row(
        "documents (100 chunks each) / 1%-filter chunks",
        lambda r: f"{r.build['documents']:,} / {r.build['selective_chunks']:,}",
    )
    row(
        "SQLite `write_document` (chunks, vectors, keyword index), s",
        lambda r: f"{r.build['sqlite_write_s']:.1f}",
    )
    row("faiss `upsert` (per document), s", lambda r: f"{r.build['faiss_upsert_s']:.1f}")
    row("faiss `save` (npz), s", lambda r: f"{r.build['faiss_save_s']:.1f}")
    row("open SQLite store (serving process), s", lambda r: f"{r.serve['open_sqlite_s']:.2f}")
    row("`load_or_rebuild` (loads the npz), s", lambda r: f"{r.serve['load_or_rebuild_s']:.1f}")
    row(
        "HNSW graph build (first query), s",
        lambda r: "loaded" if r.serve.get("hnsw_loaded") else f"{r.serve['hnsw_build_s']:.1f}",
    )
    row("SQLite file / index file, MB", lambda r: f"{r.build['sqlite_mb']:,.0f} / {r.build['index_mb']:,.0f}")
    row("peak RSS build process, MB", lambda r: f"{r.build['peak_rss_mb']:,.0f}")
    row(
        "RSS serving: after load / after HNSW / peak, MB",
        lambda r: (
            f"{r.serve['rss_after_load_mb']:,.0f} / "
            f"{r.serve['rss_after_hnsw_mb']:,.0f} / {r.serve['peak_rss_mb']:,.0f}"
        ),
    )
    row("wall time of this size (build + serve + measure, waits excluded), s", lambda r: f"{r.wall_s:.0f}")

    lines += [
        "",
        "Latency, ms: p50 / p99 (number of timed queries); the query embedding is NOT included",
        "",
        f"| path | {cols} |",
        sep,
    ]

    def latency_cell(label: str) -> Callable[[SizeResult], str]:
        def cell(r: SizeResult) -> str:
            ms = r.serve["latency_ms"][label]
            return f"{pct(ms, 50):.1f} / {pct(ms, 99):.1f} ({len(ms)})"

        return cell

    def part_cell(label: str, key: str) -> Callable[[SizeResult], str]:
        def cell(r: SizeResult) -> str:
            value = r.serve["breakdown_ms"].get(label, {}).get(key)
            return "-" if value is None else f"{value:.1f}"

        return cell

    for label in results[0].serve["latency_ms"]:
        row(label, latency_cell(label))
    lines += [
        "",
        "Where `retrieve()` spends its time (medians, ms; from `Retrieval.timings`)",
        "",
        f"| path / part | {cols} |",
        sep,
    ]
    names = {
        "embed_query": "filter ids (`allowed_chunk_ids`) + stub embed",
        "vector_search": "vector search",
        "keyword_search": "keyword search",
        "feedback": "pseudo-relevance feedback pass (vector + keyword again)",
        "smoothing": "score regularisation (pool vectors + chunks)",
        "fuse": "fuse + fetch chunks",
    }
    for label in results[0].serve["breakdown_ms"]:
        short = label.split(":")[1].strip() if ":" in label else label
        for key, name in names.items():
            row(f"{short}: {name}", part_cell(label, key))
    lines += ["", "Vector recall@10 vs exact brute force", "", f"| path | {cols} |", sep]
    row("`vectors.query(q, 10)` no filter (HNSW)", lambda r: f"{r.serve['recall_unfiltered']:.3f}")
    row(
        "through the collection filter (HNSW + id selector, 50 queries)",
        lambda r: f"{r.serve['recall_collection']:.3f}",
    )
    row("through the 1% filter (exact path)", lambda r: f"{r.serve['recall_selective']:.3f}")
    row(
        "keyword hits per query (median, first 20 queries)",
        lambda r: f"{r.serve['keyword_hits_median']:,.0f}",
    )
    if embed is not None:
        lat = embed["latency_ms"]
        lines += [
            "",
            f"MiniLM query embedding (real `MiniLMEmbedder`, {embed['queries']} short queries, median "
            f"{embed['tokens_median']:.0f} tokens, torch threads {embed['torch_threads']}, load "
            f"{embed['load_s']:.1f}s not counted, peak RSS {embed['peak_rss_mb']:,.0f} MB): "
            f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms per `embed([query])`",
        ]
    stats = results[0].build["data_stats"]
    lines += [
        "",
        "Synthetic vectors, 3,000-point sample: nearest-neighbour cosine median "
        f"{stats['nn1_cos_median']:.2f}, 10th {stats['nn10_cos_median']:.2f}, random pairs "
        f"{stats['random_pair_cos_mean']:.2f}, {stats['pcs_for_80pct']} principal components for 80%.",
    ]
    for r in results:
        lines.append(f"Load before {r.size:,}: " + "; ".join(r.load_notes) + ".")
    lines += notes
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated chunk counts")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--per-doc", type=int, default=100, help="chunks per document")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fallback-size", type=int, default=500_000)
    ap.add_argument("--budget-minutes", type=float, default=25.0)
    ap.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait for a quiet machine")
    ap.add_argument("--tmp", default=None, help="parent of the temp data dirs (default: the system's)")
    ap.add_argument("--data-dir", default=None, help="keep each size's data in DATA_DIR/<size>; reuse it")
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--path-seconds", type=float, default=120.0, help="time budget per measured path (>= 20 queries)"
    )
    ap.add_argument("--embed-queries", type=int, default=100, help="0 skips the MiniLM measurement")
    ap.add_argument(
        "--two-collections",
        action="store_true",
        help="only the two-collection case (a copy of each size's --data-dir plus a small collection)",
    )
    ap.add_argument("--two-share", type=float, default=0.01, help="the second collection's share of chunks")
    ap.add_argument("--phase", choices=["build", "serve", "embed", "two"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase == "build":
        print(json.dumps(phase_build(Path(args.dir), args.size, args.queries, args.per_doc, args.seed)))
        return
    PATH_SECONDS[0] = args.path_seconds
    if args.phase == "serve":
        print(json.dumps(phase_serve(Path(args.dir), keep=args.keep)))
        return
    if args.phase == "embed":
        print(json.dumps(phase_embed(args.embed_queries)))
        return
    if args.phase == "two":
        print(json.dumps(phase_two(Path(args.dir), args.seed, args.per_doc, args.two_share, args.queries)))
        return
    if args.two_collections:
        for size in (int(s) for s in args.sizes.split(",") if s):
            print(run_two(size, args))
        return

    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    started = time.perf_counter()
    results: list[SizeResult] = []
    notes: list[str] = []
    for size in sizes:
        if results:
            prev = results[-1]
            estimate = prev.wall_s * size / prev.size * 1.15
            if estimate > args.budget_minutes * 60 and args.fallback_size < size:
                fb_estimate = prev.wall_s * args.fallback_size / prev.size * 1.15
                notes.append(
                    f"{size:,} skipped: estimated {estimate / 60:.0f} min from {prev.size:,} "
                    f"({prev.wall_s:.0f}s, linear +15%) > {args.budget_minutes:.0f} min budget; ran "
                    f"{args.fallback_size:,} instead (estimated {fb_estimate / 60:.0f} min)."
                )
                print(notes[-1], file=sys.stderr)
                size = args.fallback_size
            else:
                notes.append(f"{size:,}: estimated {estimate / 60:.0f} min before running.")
        results.append(run_size(size, args))
    embed = None
    if args.embed_queries:
        note = wait_for_quiet(max_wait_s=args.max_wait)
        print(f"[embed] MiniLM query embedding ({note})", file=sys.stderr)
        notes.append(f"Load before the MiniLM query embedding: {note}.")
        embed = run_child(["--phase", "embed", "--embed-queries", str(args.embed_queries)])
    notes.append(f"Total wall time {(time.perf_counter() - started) / 60:.1f} min.")
    text = report(results, embed, notes)
    print(text)


if __name__ == "__main__":
    main()
