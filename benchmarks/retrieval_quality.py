"""Retrieval quality of Groundwork's own retriever on Cranfield (BEIR format), next to plain baselines.

The corpus is written as one Markdown file per abstract (``# title`` then the abstract) and ingested
the way a user would (``c.ingestor.ingest_paths([folder], "cranfield")``); each of the 225 queries then
goes through ``c.retriever.retrieve(query, "cranfield", top_k=100)``, and the chunks are mapped back to
document ids (first occurrence wins). Metrics are trec_eval's, as in the data folder's ``baselines.py``:
nDCG@10 with the graded score as linear gain and a log2 discount, recall@10 and recall@100 counting
every judged doc (score >= 1) as relevant; all 225 queries are averaged (a query with no result scores 0).

    .venv/bin/python benchmarks/retrieval_quality.py [--data /work/shared/data/cranfield]
        [--vector-weight W --keyword-weight W --rrf-k K --candidates N]   # one extra "custom" row
        [--set KEY=VALUE ...]                # any other retrieval setting for that row

Each row also gives nDCG@10 over the odd and the even query ids, the 2-fold split a setting chosen on
one half is checked on (benchmarks/RESULTS.md).

Rows: keyword alone (vector_weight 0), vectors alone (keyword_weight 0), hybrid (the defaults: z-score
fusion over 100 candidates per side, one round of pseudo-relevance feedback, score regularisation over
the candidates' vectors, see ``groundwork/rag/feedback.py``, titles and headings weighted 4 in the
keyword index), the hybrid with headings weighted 1 (the index is rebuilt for that row and back
after it: a few seconds here), the hybrid without the regularisation, the
previous default (min-max fusion, no regularisation), the first default (RRF over 30 candidates, no
feedback), and a custom row when any retrieval override is given. The "alone" rows still run the
feedback round and the regularisation (which uses the vectors even in the keyword-only row).
Next to them, the plain baselines of ``baselines.py`` computed in the same run: MiniLM dense over
``title + " " + text`` always, and BM25 (bm25s, k1=1.5, b=0.75, English
stopwords, Snowball stemmer) when ``bm25s`` and ``PyStemmer`` can be imported (they are no dependency of
Groundwork: ``pip install --target benchmarks/cache/pydeps bm25s PyStemmer``; that folder is put on
``sys.path`` when it exists).

Document embeddings are cached under ``benchmarks/cache/`` (keyed by the exact text embedded), so a
second run embeds only the queries. ``--keep-data-dir DIR`` keeps (and reuses) the ingested data dir.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
DEFAULT_DATA = Path("/work/shared/data/cranfield")
COLLECTION = "cranfield"
DEPTH = 100  # top_k asked of the retriever; the baselines keep 1,000 as baselines.py does
BASELINE_DEPTH = 1000

if (CACHE / "pydeps").is_dir():  # optional baseline-only packages installed with pip --target
    sys.path.append(str(CACHE / "pydeps"))

from groundwork.config import Settings  # noqa: E402
from groundwork.container import Container  # noqa: E402
from groundwork.models.base import EmbeddingModel, Vectors  # noqa: E402

# -- data and metrics --------------------------------------------------------------------------------


def load_beir(data: Path) -> tuple[list[dict[str, str]], list[dict[str, str]], dict[str, dict[str, int]]]:
    """Corpus, queries and graded qrels of a BEIR folder (qrels/test.tsv)."""
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        corpus = [json.loads(line) for line in fh]
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        queries = [json.loads(line) for line in fh]
    qrels: dict[str, dict[str, int]] = {}
    with open(data / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q, d, s = line.rstrip("\n").split("\t")
            qrels.setdefault(q, {})[d] = int(s)
    return corpus, queries, qrels


def query_metrics(ranking: Sequence[str], rels: dict[str, int]) -> tuple[float, float, float]:
    """trec_eval's ndcg_cut.10 (linear gain, log2 discount), recall.10 and recall.100 for one query."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:10]))
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    relevant = {d for d, g in rels.items() if g > 0}
    r10 = len(relevant.intersection(ranking[:10])) / len(relevant)
    r100 = len(relevant.intersection(ranking[:100])) / len(relevant)
    return (dcg / idcg if idcg else 0.0), r10, r100


def evaluate(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, recall@10, recall@100 over every judged query (missing runs score 0), and nDCG@10
    over the odd and the even query ids: the 2-fold split a setting chosen on one half is checked on."""
    per_q = {q: query_metrics(runs.get(q, []), rels) for q, rels in qrels.items()}
    arr = np.asarray(list(per_q.values()))
    out = dict(zip(("ndcg@10", "r@10", "r@100"), map(float, arr.mean(axis=0)), strict=True))
    for name, parity in (("odd", 1), ("even", 0)):
        half = [m[0] for q, m in per_q.items() if q.isdigit() and int(q) % 2 == parity]
        out[f"ndcg@10 {name}"] = float(np.mean(half)) if half else float("nan")
    return out


# -- cached embeddings -------------------------------------------------------------------------------


class CachedEmbedder(EmbeddingModel):
    """Wraps the configured embedder; vectors of texts seen before come from an .npy cache.

    Only calls of several texts (the passages, the dense baseline's queries) are cached: a call of one
    text (the retriever's query) goes to the embedder every time, down the path a user's query takes
    (the short-call path: ONNX Runtime, at ``--query-precision``)."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.path = path
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        self._vecs = np.zeros((0, self.dimensions), dtype=np.float32)
        keys_file = path.with_suffix(".keys.json")
        if path.is_file() and keys_file.is_file():
            self._keys = json.loads(keys_file.read_text())
            self._vecs = np.load(path)
            self._rows = {k: i for i, k in enumerate(self._keys)}
        self._new: dict[str, np.ndarray] = {}
        self.computed = 0

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    def embed(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 1:
            self.computed += 1
            return self.inner.embed(texts)
        keys = [self._key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._rows and k not in self._new]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            self.computed += len(missing)
            for i, vec in zip(missing, fresh, strict=True):
                self._new[keys[i]] = vec
        out = [self._vecs[self._rows[k]] if k in self._rows else self._new[k] for k in keys]
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dimensions)

    def save(self) -> None:
        if not self._new:
            return
        self._keys += list(self._new)
        self._vecs = np.vstack([self._vecs, *(v[None, :] for v in self._new.values())]).astype(np.float32)
        self._rows = {k: i for i, k in enumerate(self._keys)}
        self._new = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.save(self.path, self._vecs)
        self.path.with_suffix(".keys.json").write_text(json.dumps(self._keys))


# -- baselines (as baselines.py computes them) ---------------------------------------------------------


def bm25_baseline(doc_texts: list[str], q_texts: list[str]) -> list[list[int]] | None:
    """bm25s Lucene BM25 (k1=1.5, b=0.75), English stopwords, Snowball stemmer; None if not installed."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    stemmer = Stemmer.Stemmer("english")

    def tok(xs: list[str]) -> Any:
        return bm25s.tokenize(xs, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)

    retriever = bm25s.BM25()
    retriever.index(tok(doc_texts), show_progress=False)
    idx, _ = retriever.retrieve(tok(q_texts), k=BASELINE_DEPTH, show_progress=False, sorted=True, n_threads=1)
    return [[int(i) for i in row] for row in idx]


def dense_baseline(embedder: EmbeddingModel, doc_texts: list[str], q_texts: list[str]) -> list[list[int]]:
    """Cosine over normalised MiniLM embeddings of ``title + " " + text``; stable sort as baselines.py."""
    scores = embedder.embed(q_texts) @ embedder.embed(doc_texts).T
    return [list(np.argsort(-row, kind="stable")[:BASELINE_DEPTH]) for row in scores]


def rrf_baseline(*runs: list[list[int]], k: int = 60) -> list[list[int]]:
    fused = []
    for lists in zip(*runs, strict=True):
        acc: dict[int, float] = {}
        for ranking in lists:
            for r, d in enumerate(ranking, 1):
                acc[d] = acc.get(d, 0.0) + 1.0 / (k + r)
        fused.append(sorted(acc, key=lambda d: (-acc[d], d))[:BASELINE_DEPTH])
    return fused


# -- Groundwork --------------------------------------------------------------------------------------


def write_corpus(corpus: list[dict[str, str]], folder: Path, fmt: str) -> int:
    """One file per non-empty abstract: ``# title`` (md) or the title as first paragraph (txt)."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for d in corpus:
        title, text = d["title"].strip(), d["text"].strip()
        if not (title or text):
            continue  # docs 471 and 995 are empty in the source: no user has an empty file
        body = f"# {title}\n\n{text}\n" if fmt == "md" else f"{title}\n\n{text}\n"
        (folder / f"{d['_id']}.{fmt}").write_text(body, encoding="utf-8")
        n += 1
    return n


def ingest(data_dir: Path, corpus: list[dict[str, str]], fmt: str, embedder: EmbeddingModel) -> None:
    settings = Settings.load(None, data_dir=data_dir)
    c = Container(settings, embedder=embedder)
    if c.documents.collections().get(COLLECTION):
        print(f"reusing the ingested collection in {data_dir}", file=sys.stderr)
        return
    files = data_dir / "corpus-files"
    n = write_corpus(corpus, files, fmt)
    t = time.perf_counter()
    report = c.ingestor.ingest_paths([files], COLLECTION)
    print(
        f"ingested {len(report.added)}/{n} files, {report.chunks_written} chunks,"
        f" {len(report.failed)} failed, in {time.perf_counter() - t:.1f}s",
        file=sys.stderr,
    )
    c.documents.close()


def run_groundwork(
    data_dir: Path,
    embedder: EmbeddingModel,
    queries: list[dict[str, str]],
    retrieval: dict[str, Any],
) -> tuple[dict[str, list[str]], float, float]:
    """Rankings of doc ids per query, mean ms/query (search only) and mean chunks returned."""
    settings = Settings.load(None, data_dir=data_dir, retrieval=retrieval)
    c = Container(settings, embedder=embedder)
    retriever = c.retriever
    runs: dict[str, list[str]] = {}
    seconds, returned = 0.0, 0
    for q in queries:
        t = time.perf_counter()
        r = retriever.retrieve(q["text"], COLLECTION, top_k=DEPTH)
        seconds += time.perf_counter() - t - r.timings.get("embed_query", 0.0)
        returned += len(r.chunks)
        runs[q["_id"]] = list(dict.fromkeys(Path(sc.chunk.source).stem for sc in r.chunks))
    c.documents.close()
    return runs, 1000 * seconds / len(queries), returned / len(queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR folder (corpus, queries, qrels)")
    ap.add_argument("--format", choices=["md", "txt"], default="md", help="file type the abstracts go in")
    ap.add_argument("--keep-data-dir", type=Path, help="ingest into (or reuse) this data dir")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--vector-weight", type=float)
    ap.add_argument("--keyword-weight", type=float)
    ap.add_argument("--rrf-k", type=int)
    ap.add_argument("--candidates", type=int)
    ap.add_argument("--precision", default="auto", help="MiniLM precision: auto (default), fp32, bf16, int8")
    ap.add_argument(
        "--query-precision",
        default="fp32",
        help="weights of the ONNX model for queries: fp32 (default), int8",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any retrieval setting for the custom row (repeatable), e.g. --set heading_weight=2",
    )
    args = ap.parse_args()
    stray = sorted(k for k in os.environ if k.startswith("GROUNDWORK_"))
    if stray:
        print(f"warning: {stray} change the settings measured here", file=sys.stderr)

    corpus, queries, qrels = load_beir(args.data)
    from groundwork.models.embedded import MiniLMEmbedder

    minilm = MiniLMEmbedder(precision=args.precision, query_precision=args.query_precision)  # type: ignore[arg-type]
    # Keyed by the precision passages are computed in (auto resolves to the CPU's): fp32 and bf16 vectors
    # differ in the fifth decimal, and a cache must not mix them.
    embedder = CachedEmbedder(minilm, CACHE / f"minilm-{minilm.precision}-cranfield.npy")
    print(
        f"MiniLM passages in {minilm.precision} (precision {args.precision}), queries on "
        f"{'torch' if minilm.query_runtime == 'torch' else 'ONNX Runtime'} ({args.query_precision})",
        file=sys.stderr,
    )
    rows: list[tuple[str, dict[str, float], str]] = []
    if not args.no_baselines:
        dids = [d["_id"] for d in corpus]
        doc_texts = [(d["title"] + " " + d["text"]).strip() for d in corpus]
        q_texts = [q["text"] for q in queries]
        qids = [q["_id"] for q in queries]
        dense = dense_baseline(embedder, doc_texts, q_texts)
        bm25 = bm25_baseline(doc_texts, q_texts)
        as_runs = lambda ranks: {q: [dids[i] for i in r] for q, r in zip(qids, ranks, strict=True)}  # noqa: E731
        if bm25 is not None:
            rows.append(("baseline: BM25 (bm25s, stemmed)", evaluate(as_runs(bm25), qrels), ""))
        rows.append(("baseline: dense MiniLM (title + text)", evaluate(as_runs(dense), qrels), ""))
        if bm25 is not None:
            fused = rrf_baseline(bm25, dense)
            rows.append(("baseline: RRF k=60 of the two", evaluate(as_runs(fused), qrels), ""))
        embedder.save()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.keep_data_dir or Path(tmp)
        ingest(data_dir, corpus, args.format, embedder)
        embedder.save()
        configs: list[tuple[str, dict[str, Any]]] = [
            ("Groundwork keyword only (vector_weight 0)", {"vector_weight": 0.0}),
            ("Groundwork vectors only (keyword_weight 0)", {"keyword_weight": 0.0}),
            ("Groundwork hybrid (defaults)", {}),
            ("Groundwork hybrid, headings not weighted (heading_weight 1)", {"heading_weight": 1}),
            ("Groundwork hybrid without score regularisation", {"smoothing_neighbours": 0}),
            (
                "Groundwork previous default (min-max, no regularisation)",
                {"fusion": "minmax", "smoothing_neighbours": 0},
            ),
            (
                "Groundwork before feedback (RRF, 30 candidates, no feedback)",
                {"fusion": "rrf", "candidates": 30, "feedback_docs": 0, "smoothing_neighbours": 0},
            ),
        ]
        custom: dict[str, Any] = {
            k: v
            for k, v in {
                "vector_weight": args.vector_weight,
                "keyword_weight": args.keyword_weight,
                "rrf_k": args.rrf_k,
                "candidates": args.candidates,
            }.items()
            if v is not None
        }
        for item in args.set:
            key, _, value = item.partition("=")
            try:
                custom[key.strip()] = json.loads(value)
            except ValueError:  # a bare word, e.g. --set fusion=rrf
                custom[key.strip()] = value
        if custom:
            configs.append((f"Groundwork custom {custom}", custom))
        for name, overrides in configs:
            runs, ms, returned = run_groundwork(data_dir, embedder, queries, overrides)
            rows.append((name, evaluate(runs, qrels), f"{ms:.1f} ms/q, {returned:.0f} chunks"))
        embedder.save()

    judged = sum(map(len, qrels.values()))
    print(f"\nCranfield: {len(corpus)} docs, {len(queries)} queries, {judged} judgements\n")
    print("| system | nDCG@10 | odd ids | even ids | R@10 | R@100 | notes |\n|---|---|---|---|---|---|---|")
    for name, m, note in rows:
        print(
            f"| {name} | {m['ndcg@10']:.4f} | {m['ndcg@10 odd']:.4f} | {m['ndcg@10 even']:.4f}"
            f" | {m['r@10']:.4f} | {m['r@100']:.4f} | {note} |"
        )


if __name__ == "__main__":
    main()
