"""Gated promotion: a prompt version gets a label (``production``) only when its evaluation holds.

:func:`decide` is the policy, pure: the candidate's run must pass the suite's thresholds, and when the
label already points at another version, the candidate must not be significantly worse than it
(the comparison's verdict is not ``worse``). :func:`promote` runs the suite on both versions, decides,
and moves the label only when allowed, recording the evidence as the move's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from groundwork.errors import InputError, NotFoundError
from groundwork.evals.assertions import Evaluator
from groundwork.evals.compare import Comparison, compare_runs
from groundwork.evals.results import SuiteRun
from groundwork.evals.runner import Progress, run_suite
from groundwork.evals.suite import Suite
from groundwork.evals.targets import EvalDeps, build_target
from groundwork.prompts.registry import parse_ref


@dataclass(frozen=True)
class GateDecision:
    """Whether the label moved, why, and the evidence."""

    allowed: bool
    reasons: tuple[str, ...]
    candidate: SuiteRun
    baseline: SuiteRun | None = None
    comparison: Comparison | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reasons": list(self.reasons),
            "candidate": self.candidate.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "comparison": self.comparison.to_dict() if self.comparison else None,
        }


def decide(candidate: SuiteRun, comparison: Comparison | None) -> tuple[bool, tuple[str, ...]]:
    """The gate's policy (pure): ``(allowed, reasons)``."""
    reasons: list[str] = []
    if candidate.passed:
        reasons.append(f"suite {candidate.suite!r} passed ({candidate.pass_rate:.0%} of cases)")
    else:
        reasons += [f"suite {candidate.suite!r} failed: {f}" for f in candidate.failures]
    if comparison is None:
        reasons.append("no version holds the label yet: nothing to compare with")
    elif comparison.verdict == "worse":
        reasons.append(f"significantly worse than {comparison.a}: {comparison.summary()}")
    else:
        reasons.append(f"not significantly worse than {comparison.a}: {comparison.summary()}")
    allowed = candidate.passed and (comparison is None or comparison.verdict != "worse")
    return allowed, tuple(reasons)


@dataclass(frozen=True)
class GateOptions:
    """How the gate runs and compares (from ``prompts`` settings)."""

    concurrency: int = 4
    resamples: int = 2000
    confidence: float = 0.95
    margin: float = 0.0


async def promote(
    suite: Suite,
    deps: EvalDeps,
    evaluator: Evaluator,
    name: str,
    version: int,
    label: str,
    options: GateOptions = GateOptions(),
    actor: str = "local",
    progress: Callable[[str], Progress | None] | None = None,
) -> GateDecision:
    """Run the gate for ``name@version`` and move ``label`` when it holds. ``progress(phase)`` may
    return a per-case progress callback for the candidate and the baseline runs."""
    suite_prompt, _ = parse_ref(suite.target.prompt or deps.answer_prompt)
    if suite.target.kind == "model" or suite_prompt != name:
        raise InputError(
            f"suite {suite.name!r} evaluates {suite_prompt if suite.target.kind != 'model' else 'a model'}, "
            f"not prompt {name!r}; pick a suite whose target prompt is {name}"
        )
    candidate_version = deps.prompts.get(name, version)
    try:
        current = deps.prompts.get(name, label)
    except NotFoundError:
        current = None
    if current is not None and current.version == candidate_version.version:
        raise InputError(f"{label} already points at {candidate_version.ref}")
    candidate = await run_suite(
        suite,
        build_target(suite, deps, candidate_version.ref),
        evaluator,
        options.concurrency,
        progress("candidate") if progress else None,
    )
    baseline = comparison = None
    if current is not None:
        baseline = await run_suite(
            suite,
            build_target(suite, deps, current.ref),
            evaluator,
            options.concurrency,
            progress("baseline") if progress else None,
        )
        comparison = compare_runs(baseline, candidate, options.resamples, options.confidence, options.margin)
    allowed, reasons = decide(candidate, comparison)
    if allowed:
        deps.prompts.set_label(name, label, candidate_version.version, actor, "gate: " + "; ".join(reasons))
    return GateDecision(allowed, reasons, candidate, baseline, comparison)
