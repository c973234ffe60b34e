"""Ingestion throughput: the ingestion pipeline's chunks/s versus the raw embedder's on the same texts.

    .venv/bin/python benchmarks/ingest_throughput.py [--runs 5] [--copies 3] [--embedder minilm|fake]

The corpus is the bundled sample handbook copied ``--copies`` times into a temp folder (``copy0/``,
``copy1/``, ...), so every copy is a separate set of documents. One shared embedder object is used for
everything (it is loaded and warmed before any timing, so model load is never counted):

* ingest run: a fresh data dir, ``Container(Settings.load(None, data_dir=tmp), embedder=shared)``,
  ``c.embedder.embed(["warm up"])``, the store and index opened, then ``ingest_paths([folder])`` is
  timed; chunks/s = ``report.chunks_written / elapsed``. The same folder is then ingested again
  (unchanged) to time an incremental re-ingest, which must embed 0 chunks.
* raw run: the exact texts the embedder saw during ingestion (``embedding_text(title, heading_path,
  text)`` of every stored chunk, in store order) embedded with one ``embed(texts)`` call (the embedder
  batches internally); chunks/s = ``n / elapsed``.

Runs are interleaved (raw, ingest, raw, ingest, ...) so machine noise hits both sides alike; the
report gives medians, min/max and the ratio of medians (ingest / raw). An untimed warm-up ingest comes
first (it also collects the texts), and an instrumented ingest comes last (``--no-breakdown`` skips it)
to split the ingest time into embed, parse, chunk (token counting), SQLite write, faiss and the rest;
it also checks that the embedder saw exactly the raw runs' texts.
"""

from __future__ import annotations

import argparse
import gc
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import groundwork.rag.ingest as ingest_module
from groundwork.config import Settings
from groundwork.container import Container
from groundwork.models.base import EmbeddingModel, Vectors
from groundwork.rag.chunking import embedding_text
from groundwork.rag.ingest import IngestReport
from groundwork.samples import handbook_dir


@dataclass
class IngestRun:
    """One timed ingestion plus the incremental re-ingest that follows it."""

    chunks: int
    seconds: float
    reingest_seconds: float
    reingest_embedded: int

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds


@dataclass
class RawRun:
    """One timed ``embed(texts)`` call."""

    chunks: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds


class TimedEmbedder(EmbeddingModel):
    """Delegates to an embedder and adds up the time spent in ``embed`` and ``count_tokens``."""

    def __init__(self, inner: EmbeddingModel) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.max_tokens = inner.max_tokens
        self.embed_seconds = 0.0
        self.count_seconds = 0.0
        self.embed_calls = 0
        self.count_calls = 0
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        started = time.perf_counter()
        out = self.inner.embed(texts)
        self.embed_seconds += time.perf_counter() - started
        self.embed_calls += 1
        self.texts.extend(texts)
        return out

    def count_tokens(self, text: str) -> int:
        started = time.perf_counter()
        n = self.inner.count_tokens(text)
        self.count_seconds += time.perf_counter() - started
        self.count_calls += 1
        return n


def settings_for(data_dir: Path, embedder: str) -> Settings:
    return Settings.load(None, data_dir=data_dir, embeddings={"provider": embedder})


def build_corpus(dest: Path, copies: int) -> Path:
    """Copy the sample handbook ``copies`` times into ``dest/copyN/``; returns ``dest``."""
    for i in range(copies):
        shutil.copytree(handbook_dir(), dest / f"copy{i}")
    return dest


def stored_texts(c: Container) -> list[str]:
    """What the embedder saw for every chunk in the store, in store (= ingestion) order."""
    ids = [int(i) for batch_ids, _ in c.documents.iter_vectors() for i in batch_ids]
    chunks = c.documents.get_chunks(ids)
    return [embedding_text(chunks[i].title, chunks[i].heading_path, chunks[i].text) for i in ids]


def check_report(report: IngestReport, label: str) -> None:
    if report.failed:
        raise SystemExit(f"{label}: {len(report.failed)} files failed to ingest: {report.failed[:3]}")


def ingest_run(folder: Path, embedder_kind: str, shared: EmbeddingModel) -> IngestRun:
    """Ingest ``folder`` into a fresh data dir (timed), then re-ingest it unchanged (timed)."""
    with tempfile.TemporaryDirectory(prefix="gw-bench-data-") as tmp:
        c = Container(settings_for(Path(tmp), embedder_kind), embedder=shared)
        try:
            c.embedder.embed(["warm up"])
            ingestor = c.ingestor  # opens the SQLite store and the vector index outside the timing
            gc.collect()
            started = time.perf_counter()
            report = ingestor.ingest_paths([folder])
            elapsed = time.perf_counter() - started
            check_report(report, "ingest")
            started = time.perf_counter()
            again = ingestor.ingest_paths([folder])
            again_elapsed = time.perf_counter() - started
            check_report(again, "re-ingest")
        finally:
            c.close()
    return IngestRun(report.chunks_written, elapsed, again_elapsed, again.chunks_embedded)


def raw_run(texts: Sequence[str], shared: EmbeddingModel) -> RawRun:
    gc.collect()
    started = time.perf_counter()
    vectors = shared.embed(texts)
    elapsed = time.perf_counter() - started
    assert vectors.shape[0] == len(texts)
    return RawRun(len(texts), elapsed)


def warm_up(folder: Path, embedder_kind: str) -> tuple[EmbeddingModel, list[str], int]:
    """Load the embedder, do one untimed ingest; returns the embedder, the texts and the document count."""
    with tempfile.TemporaryDirectory(prefix="gw-bench-data-") as tmp:
        c = Container(settings_for(Path(tmp), embedder_kind))
        try:
            started = time.perf_counter()
            c.embedder.embed(["warm up"])
            print(f"embedder {c.embedder.name} loaded in {time.perf_counter() - started:.1f}s (not counted)")
            report = c.ingestor.ingest_paths([folder])
            check_report(report, "warm-up ingest")
            texts = stored_texts(c)
            if len(texts) != report.chunks_written:
                raise SystemExit(f"store holds {len(texts)} chunks but {report.chunks_written} were written")
            print(
                f"warm-up ingest: {len(report.added)} documents, {len(texts)} chunks "
                f"in {report.seconds:.2f}s (not counted)"
            )
            return c.embedder, texts, len(report.added)
        finally:
            c.close()


class PhaseTimer:
    """Adds up the time spent in wrapped callables, by label; :meth:`restore` undoes the wrapping."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        self.seconds.setdefault(label, 0.0)
        self.calls.setdefault(label, 0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        self._undo.append((owner, attr, owner.__dict__.get(attr, _MISSING)))
        setattr(owner, attr, timed)

    def restore(self) -> None:
        for owner, attr, before in reversed(self._undo):
            if before is _MISSING:
                delattr(owner, attr)
            else:
                setattr(owner, attr, before)
        self._undo.clear()


_MISSING = object()


def breakdown(folder: Path, embedder_kind: str, shared: EmbeddingModel, texts: Sequence[str]) -> list[str]:
    """One instrumented ingest: where the time goes. Returns markdown table rows."""
    timed = TimedEmbedder(shared)
    phases = PhaseTimer()
    with tempfile.TemporaryDirectory(prefix="gw-bench-data-") as tmp:
        c = Container(settings_for(Path(tmp), embedder_kind), embedder=timed)
        try:
            shared.embed(["warm up"])
            ingestor = c.ingestor
            phases.wrap(ingest_module, "load_bytes", "parse (loaders)")
            phases.wrap(ingest_module, "chunk_document", "chunk (incl. count_tokens)")
            phases.wrap(ingestor.documents, "write_document", "SQLite write (chunks, vectors, FTS)")
            phases.wrap(ingestor.vectors, "upsert", "faiss upsert/delete")
            phases.wrap(ingestor.vectors, "delete", "faiss upsert/delete")
            phases.wrap(ingestor.vectors, "save", "faiss save")
            gc.collect()
            started = time.perf_counter()
            report = ingestor.ingest_paths([folder])
            total = time.perf_counter() - started
            check_report(report, "instrumented ingest")
        finally:
            phases.restore()
            c.close()
    same = "yes" if timed.texts == list(texts) else "NO"
    print(f"instrumented ingest: embedder saw the same texts as the raw runs: {same}")

    def row(part: str, seconds: float, calls: str) -> str:
        return f"| {part} | {seconds:.3f} | {100 * seconds / total:.0f}% | {calls} |"

    rows = [
        "| part of one ingest (instrumented) | seconds | share | calls |",
        "|---|---:|---:|---:|",
        row("embed() (one call per document)", timed.embed_seconds, str(timed.embed_calls)),
    ]
    for label, seconds in phases.seconds.items():
        calls = str(phases.calls[label])
        if label.startswith("chunk"):
            calls += f" ({timed.count_calls} count_tokens, {timed.count_seconds:.3f}s)"
        rows.append(row(label, seconds, calls))
    rest = total - timed.embed_seconds - sum(phases.seconds.values())
    rows += [
        row("rest (discover, read, hash, lookups, Python glue)", rest, "-"),
        row("total", total, "-"),
    ]
    return rows


def rate_row(label: str, runs: Sequence[IngestRun] | Sequence[RawRun]) -> str:
    rates = [r.rate for r in runs]
    secs = statistics.median(r.seconds for r in runs)
    return (
        f"| {label} | {runs[0].chunks} | {secs:.3f} | {statistics.median(rates):.1f} "
        f"| {min(rates):.1f} | {max(rates):.1f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each kind (default 5)")
    ap.add_argument("--copies", type=int, default=3, help="copies of the sample handbook (default 3)")
    ap.add_argument("--embedder", choices=["minilm", "fake"], default="minilm")
    ap.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="finish with one instrumented ingest that splits the time (default on)",
    )
    args = ap.parse_args()
    if args.runs < 1 or args.copies < 1:
        ap.error("--runs and --copies must be at least 1")

    threads = "-"
    if args.embedder == "minilm":
        import torch

        threads = str(torch.get_num_threads())
    print(
        f"python {platform.python_version()}, {platform.machine()}, torch threads {threads}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )

    with tempfile.TemporaryDirectory(prefix="gw-bench-corpus-") as corpus_tmp:
        folder = build_corpus(Path(corpus_tmp), args.copies)
        shared, texts, n_docs = warm_up(folder, args.embedder)
        ingests: list[IngestRun] = []
        raws: list[RawRun] = []
        for i in range(1, args.runs + 1):
            raw = raw_run(texts, shared)
            raws.append(raw)
            ing = ingest_run(folder, args.embedder, shared)
            ingests.append(ing)
            if ing.chunks != len(texts):
                raise SystemExit(f"run {i}: ingest wrote {ing.chunks} chunks, expected {len(texts)}")
            print(
                f"run {i}/{args.runs}: raw {raw.rate:7.1f} chunks/s ({raw.seconds:.3f}s)   "
                f"ingest {ing.rate:7.1f} chunks/s ({ing.seconds:.3f}s)   "
                f"re-ingest {ing.reingest_seconds:.3f}s, {ing.reingest_embedded} embedded"
            )
        parts = breakdown(folder, args.embedder, shared, texts) if args.breakdown else []

    raw_median = statistics.median(r.rate for r in raws)
    ingest_median = statistics.median(r.rate for r in ingests)
    re_secs = [r.reingest_seconds for r in ingests]
    re_embedded = sorted({r.reingest_embedded for r in ingests})
    lines = [
        f"embedder `{args.embedder}` ({shared.name}), {args.copies} copies of the handbook = "
        f"{n_docs} documents, {len(texts)} chunks, {args.runs} interleaved runs of each",
        "",
        "| measure | chunks | median s | median chunks/s | min chunks/s | max chunks/s |",
        "|---|---:|---:|---:|---:|---:|",
        rate_row("raw `embed(texts)`", raws),
        rate_row("ingest `ingest_paths([folder])`", ingests),
        f"| **ratio ingest / raw (medians)** | | | **{ingest_median / raw_median:.2f}** | | |",
        "",
        "| incremental re-ingest (unchanged folder) | median s | min s | max s | chunks_embedded |",
        "|---|---:|---:|---:|---:|",
        f"| `ingest_paths([folder])` again | {statistics.median(re_secs):.3f} | {min(re_secs):.3f} "
        f"| {max(re_secs):.3f} | {', '.join(map(str, re_embedded))} |",
    ]
    if parts:
        lines += ["", *parts]
    print()
    print("\n".join(lines))
    if re_embedded != [0]:
        raise SystemExit("re-ingesting the unchanged folder embedded chunks; expected 0")


if __name__ == "__main__":
    main()
