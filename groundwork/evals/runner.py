"""Run a suite against a target: cases concurrently, each checked, then the thresholds.

A case that raises (its target failed, a variable was missing, the judge never gave a readable
verdict) is recorded with its error and scores 0; the other cases go on. ``progress`` is called after
each case with ``(done, total, result)`` (the CLI draws a progress bar with it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from groundwork.errors import GroundworkError
from groundwork.evals import rag_metrics
from groundwork.evals.assertions import Evaluator, check, check_metric
from groundwork.evals.results import AssertionResult, CaseOutput, CaseResult, SuiteRun
from groundwork.evals.suite import Case, Suite
from groundwork.evals.targets import Target

Progress = Callable[[int, int, CaseResult], None]


def compute_metrics(case: Case, out: CaseOutput, ev: Evaluator) -> dict[str, float | None]:
    """The four RAG metrics of one case (see :mod:`groundwork.evals.rag_metrics`)."""
    gold = case.gold_documents
    return {
        "context_recall": rag_metrics.context_recall(out.contexts, gold),
        "context_precision": rag_metrics.context_precision(out.contexts, gold),
        "faithfulness": rag_metrics.faithfulness(out.draft or out.text, out.contexts, ev.min_support),
        "answer_relevance": rag_metrics.answer_relevance(case.question or "", out.text, ev.embedder),
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GroundworkError):
        return f"{type(exc).__name__}: {exc.message} (id {exc.error_id})"
    return f"{type(exc).__name__}: {exc}"


async def run_case(suite: Suite, case: Case, target: Target, ev: Evaluator) -> CaseResult:
    """One case: output, metrics, assertions. Never raises for the case's own failures."""
    try:
        out = await target.run(case)
    except Exception as exc:
        return CaseResult(case.id, case.input_text, None, error=_describe(exc))
    try:
        metrics = await asyncio.to_thread(compute_metrics, case, out, ev) if target.rag else {}
        results: list[AssertionResult] = []
        for spec in suite.assertions_of(case):
            if spec.type == "metric":
                results.append(check_metric(spec, metrics))
            else:
                results.append(await check(spec, case, out, ev))
    except Exception as exc:
        return CaseResult(case.id, case.input_text, out, error=_describe(exc))
    return CaseResult(case.id, case.input_text, out, tuple(results), metrics)


def threshold_failures(suite: Suite, cases: Sequence[CaseResult]) -> tuple[str, ...]:
    """The suite's thresholds that ``cases`` do not meet, in words (pure)."""
    run = SuiteRun(suite.name, "", tuple(cases), 0.0)
    t = suite.thresholds
    failures: list[str] = []
    if run.pass_rate < t.pass_rate:
        passed = sum(c.passed for c in cases)
        failures.append(f"pass rate {run.pass_rate:.0%} ({passed}/{len(cases)}) is below {t.pass_rate:.0%}")
    if t.mean_score is not None and run.mean_score < t.mean_score:
        failures.append(f"mean score {run.mean_score:.3f} is below {t.mean_score}")
    means = run.metric_means()
    for name, minimum in t.metrics.items():
        value = means.get(name)
        if value is None:
            failures.append(f"{name} could not be measured (no case it applies to)")
        elif value < minimum:
            failures.append(f"{name} {value:.3f} is below {minimum}")
    return tuple(failures)


async def run_suite(
    suite: Suite,
    target: Target,
    evaluator: Evaluator,
    concurrency: int = 4,
    progress: Progress | None = None,
) -> SuiteRun:
    """Run every case of ``suite`` on ``target``, at most ``concurrency`` at once."""
    started = time.perf_counter()
    limit = asyncio.Semaphore(suite.concurrency or concurrency)
    done = 0

    async def one(case: Case) -> CaseResult:
        nonlocal done
        async with limit:
            result = await run_case(suite, case, target, evaluator)
        done += 1
        if progress is not None:
            progress(done, len(suite.cases), result)
        return result

    results = await asyncio.gather(*(one(c) for c in suite.cases))
    return SuiteRun(
        suite.name,
        target.name,
        tuple(results),
        time.perf_counter() - started,
        threshold_failures(suite, results),
    )
