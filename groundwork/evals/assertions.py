"""Assertions: one checker per type, registered in :data:`CHECKERS`.

A checker gets the assertion's spec, the case, the target's output and an :class:`Evaluator` (the
embedder and the judge, for the assertions that need a model) and returns an
:class:`~groundwork.evals.results.AssertionResult`. Add a type by adding a checker to the mapping
(and its name to :data:`~groundwork.evals.suite.AssertionType`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import jsonschema  # type: ignore[import-untyped]

from groundwork.errors import InputError
from groundwork.evals.judge import LLMJudge
from groundwork.evals.rag_metrics import matches_document
from groundwork.evals.results import AssertionResult, CaseOutput
from groundwork.evals.suite import AssertionSpec, Case
from groundwork.models.base import EmbeddingModel
from groundwork.rag.answer import NO_ANSWER
from groundwork.rag.grounding import is_refusal


@dataclass(frozen=True)
class Evaluator:
    """What model-backed assertions and metrics use: an embedder and (optionally) a judge."""

    embedder: EmbeddingModel
    judge: LLMJudge | None = None
    min_support: float = 0.5


Checker = Callable[[AssertionSpec, Case, CaseOutput, Evaluator], Awaitable[AssertionResult]]


def _result(spec: AssertionSpec, passed: bool, detail: str, score: float | None = None) -> AssertionResult:
    value = (1.0 if passed else 0.0) if score is None else score
    return AssertionResult(spec.type, passed, value, detail, spec.weight)


def _reference(spec: AssertionSpec, case: Case) -> list[str]:
    value = spec.value if spec.value is not None else case.expected
    if value is None:
        raise InputError(
            f"case {case.id!r}: a {spec.type!r} assertion needs a value or the case's `expected`"
        )
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _fold(text: str, spec: AssertionSpec) -> str:
    return text if spec.case_sensitive else text.casefold()


async def _equals(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    refs = _reference(spec, case)
    ok = any(_fold(out.text.strip(), spec) == _fold(r.strip(), spec) for r in refs)
    return _result(spec, ok, "" if ok else f"output is not {refs[0]!r}")


async def _contains(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    refs = _reference(spec, case)
    hit = next((r for r in refs if _fold(r, spec) in _fold(out.text, spec)), None)
    return _result(spec, hit is not None, f"contains {hit!r}" if hit else f"none of {refs} in the output")


async def _not_contains(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    refs = _reference(spec, case)
    hit = next((r for r in refs if _fold(r, spec) in _fold(out.text, spec)), None)
    return _result(spec, hit is None, f"contains {hit!r}" if hit else "")


async def _regex(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    try:
        pattern = re.compile(str(spec.value), 0 if spec.case_sensitive else re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"case {case.id!r}: invalid regex {spec.value!r}: {exc}") from exc
    ok = pattern.search(out.text) is not None
    return _result(spec, ok, "" if ok else f"no match for /{spec.value}/")


async def _json_schema(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    text = out.text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    try:
        value = json.loads(fence.group(1) if fence else text)
    except json.JSONDecodeError as exc:
        return _result(spec, False, f"output is not JSON: {exc}")
    try:
        jsonschema.validate(value, spec.value)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return _result(spec, False, f"{where}: {exc.message}")
    except jsonschema.SchemaError as exc:
        raise InputError(f"case {case.id!r}: invalid JSON schema: {exc.message}") from exc
    return _result(spec, True, "")


async def _similarity(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    refs = _reference(spec, case)
    vectors = await ev.embedder.aembed([out.text, *refs])
    best = max(float(vectors[0] @ vectors[i]) for i in range(1, len(refs) + 1))
    threshold = 0.7 if spec.threshold is None else spec.threshold
    return _result(spec, best >= threshold, f"similarity {best:.3f} (min {threshold})", max(0.0, best))


async def _judge(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    if ev.judge is None:
        raise InputError("a 'judge' assertion needs a judge model (prompts.judge_model)")
    threshold = 0.5 if spec.threshold is None else spec.threshold
    assert spec.rubric is not None  # checked by the suite
    verdict = await ev.judge.grade(spec.rubric, out.text, case.input_text, case.expected or "", threshold)
    detail = f"{verdict.reason} (score {verdict.score:.2f}, {verdict.attempts} call(s))"
    return _result(spec, verdict.passed and verdict.score >= threshold, detail, verdict.score)


async def _latency(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    ms = out.latency_s * 1000
    assert spec.max_ms is not None
    return _result(spec, ms <= spec.max_ms, f"{ms:.0f} ms (max {spec.max_ms:.0f})")


async def _cost(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    assert spec.max_cost is not None
    return _result(spec, out.cost <= spec.max_cost, f"cost {out.cost:.6f} (max {spec.max_cost})")


async def _citation(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    wanted = spec.documents or case.gold_documents
    if not wanted:  # a suite-wide citation check on a case no document answers
        return _result(spec, True, "no gold documents: does not apply")
    cited = [g for g in wanted if any(matches_document(g, c.document, c.source) for c in out.citations)]
    names = sorted({c.source.rsplit("/", 1)[-1] or c.document for c in out.citations})
    detail = f"cites {names}" if cited else f"cites {names or 'nothing'}, expected one of {wanted}"
    return _result(spec, bool(cited), detail)


async def _refusal(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    refused = out.mode == "no_answer" or out.text.strip() == NO_ANSWER or is_refusal(out.text)
    ok = refused == spec.expected
    return _result(spec, ok, ("refused" if refused else "answered") + ("" if ok else " (unexpected)"))


async def _metric(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    raise AssertionError("metric assertions are checked by the runner, which computes the metrics")


CHECKERS: dict[str, Checker] = {
    "equals": _equals,
    "contains": _contains,
    "not_contains": _not_contains,
    "regex": _regex,
    "json_schema": _json_schema,
    "similarity": _similarity,
    "judge": _judge,
    "latency": _latency,
    "cost": _cost,
    "citation": _citation,
    "refusal": _refusal,
    "metric": _metric,
}


def check_metric(spec: AssertionSpec, metrics: dict[str, float | None]) -> AssertionResult:
    """A ``metric`` assertion against the case's computed metrics (passes when it does not apply)."""
    assert spec.metric is not None and spec.threshold is not None
    value = metrics.get(spec.metric)
    if value is None:
        return _result(spec, True, f"{spec.metric} does not apply")
    return _result(spec, value >= spec.threshold, f"{spec.metric} {value:.3f} (min {spec.threshold})", value)


async def check(spec: AssertionSpec, case: Case, out: CaseOutput, ev: Evaluator) -> AssertionResult:
    """Run one assertion."""
    return await CHECKERS[spec.type](spec, case, out, ev)
