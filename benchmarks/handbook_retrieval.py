"""Retrieval hit rate on the sample handbook: is the answering document in the top 3?

Also prints the best vector score of answerable vs unanswerable questions, which is the evidence the
"documents do not say" threshold (retrieval.min_vector_score) is set from.

    .venv/bin/python benchmarks/handbook_retrieval.py [--embedder minilm|fake] [--generate N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.samples import handbook_dir, questions_file


def _answer_all(c: Container, answerable: list[dict[str, str]], unanswerable: list[str]) -> None:
    """Answer with the configured model; tally modes, right citations and refusals."""
    modes: dict[str, int] = {}
    right, seconds = 0, []
    for q in answerable:
        t = time.perf_counter()
        a = asyncio.run(c.answerer.ask(q["question"]))
        seconds.append(time.perf_counter() - t)
        modes[a.mode] = modes.get(a.mode, 0) + 1
        ok = bool(a.citations) and Path(a.citations[0].source).name == q["document"]
        right += ok
        print(f"[{a.mode} {seconds[-1]:.1f}s ok={ok}] {q['question']}")
        print(f"   draft: {a.draft!r}\n   answer: {a.text}")
    print(f"answerable: {len(answerable)}; modes {modes}; first citation is the right document: {right}")
    print(f"seconds per answer: median {statistics.median(seconds):.1f}")
    refused = 0
    for question in unanswerable:
        a = asyncio.run(c.answerer.ask(question))
        refused += a.mode == "no_answer"
        print(f"[{a.mode}] {question} -> {a.text}")
    print(f"unanswerable: {refused}/{len(unanswerable)} answered 'the documents do not say'")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument(
        "--generate", type=int, default=0, help="also answer the first N questions with the model"
    )
    ap.add_argument("--k", type=int, default=3)
    args = ap.parse_args()
    questions = yaml.safe_load(questions_file().read_text())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(None, data_dir=Path(tmp), embeddings={"provider": args.embedder})
        c = Container(settings)
        report = c.ingestor.ingest_paths([handbook_dir()])
        print(f"ingested {len(report.added)} docs, {report.chunks_written} chunks in {report.seconds:.1f}s")
        hits, answerable_best, ranks = 0, [], []
        for q in questions["answerable"]:
            r = c.retriever.retrieve(q["question"], top_k=args.k)
            names = [Path(sc.chunk.source).name for sc in r.chunks]
            answerable_best.append(r.best_vector_score)
            if q["document"] in names:
                hits += 1
                ranks.append(names.index(q["document"]) + 1)
            else:
                print(f"  MISS {q['question']!r} -> {names} (want {q['document']})")
        n = len(questions["answerable"])
        print(
            f"hit rate @{args.k}: {hits}/{n} = {hits / n:.3f}; mean rank of hits {statistics.mean(ranks):.2f}"
        )
        unanswerable = [q if isinstance(q, str) else q["question"] for q in questions["unanswerable"]]
        unanswerable_best = [c.retriever.retrieve(q).best_vector_score for q in unanswerable]
        print(
            f"best vector score, answerable: min {min(answerable_best):.3f} "
            f"median {statistics.median(answerable_best):.3f}"
        )
        print(
            f"best vector score, unanswerable: max {max(unanswerable_best):.3f} "
            f"median {statistics.median(unanswerable_best):.3f}"
        )
        below = sum(s < settings.retrieval.min_vector_score for s in answerable_best)
        above = sum(s >= settings.retrieval.min_vector_score for s in unanswerable_best)
        print(
            f"threshold {settings.retrieval.min_vector_score}: {below} answerable refused, "
            f"{above} unanswerable let through"
        )
        if args.generate:
            _answer_all(c, questions["answerable"][: args.generate], unanswerable)
        c.close()


if __name__ == "__main__":
    main()
