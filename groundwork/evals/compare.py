"""Compare two runs of one suite: per-case differences, a paired bootstrap interval, a verdict.

The difference of case *i* is ``score_B(i) - score_A(i)``. The interval is the percentile interval of
the mean difference over ``resamples`` resamplings of the cases (with replacement, pairs kept
together), from a fixed seed so the same runs always give the same verdict. B is **better** when the
whole interval is above ``+margin``, **worse** when it is below ``-margin``, otherwise there is **no
significant difference**.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from groundwork.errors import InputError
from groundwork.evals.results import SuiteRun

Verdict = Literal["better", "worse", "no_difference"]


@dataclass(frozen=True, slots=True)
class CaseDiff:
    """One case under A and B."""

    case_id: str
    score_a: float
    score_b: float
    passed_a: bool
    passed_b: bool

    @property
    def diff(self) -> float:
        return self.score_b - self.score_a


@dataclass(frozen=True, slots=True)
class Comparison:
    """B against A on the same cases."""

    a: str
    b: str
    cases: tuple[CaseDiff, ...]
    mean_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    verdict: Verdict

    @property
    def mean_a(self) -> float:
        return float(np.mean([c.score_a for c in self.cases]))

    @property
    def mean_b(self) -> float:
        return float(np.mean([c.score_b for c in self.cases]))

    def summary(self) -> str:
        """One line: the verdict with the numbers behind it."""
        words = {"better": "B is better", "worse": "B is worse", "no_difference": "no significant difference"}
        return (
            f"{words[self.verdict]}: mean {self.mean_b:.3f} vs {self.mean_a:.3f}, difference "
            f"{self.mean_diff:+.3f} ({self.confidence:.0%} CI {self.ci_low:+.3f} to {self.ci_high:+.3f}, "
            f"{len(self.cases)} paired cases)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "mean_a": round(self.mean_a, 4),
            "mean_b": round(self.mean_b, 4),
            "mean_diff": round(self.mean_diff, 4),
            "ci": [round(self.ci_low, 4), round(self.ci_high, 4)],
            "confidence": self.confidence,
            "verdict": self.verdict,
            "summary": self.summary(),
            "cases": [
                {
                    "id": c.case_id,
                    "score_a": round(c.score_a, 4),
                    "score_b": round(c.score_b, 4),
                    "diff": round(c.diff, 4),
                    "passed_a": c.passed_a,
                    "passed_b": c.passed_b,
                }
                for c in self.cases
            ],
        }


def paired_bootstrap(
    diffs: Sequence[float], resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` (pure; deterministic for a seed)."""
    if not diffs:
        raise InputError("cannot compare runs without cases")
    values = np.asarray(diffs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def verdict_of(ci_low: float, ci_high: float, margin: float = 0.0) -> Verdict:
    """better / worse / no_difference from an interval of B - A."""
    if ci_low > margin:
        return "better"
    if ci_high < -margin:
        return "worse"
    return "no_difference"


def compare_runs(
    a: SuiteRun,
    b: SuiteRun,
    resamples: int = 2000,
    confidence: float = 0.95,
    margin: float = 0.0,
    seed: int = 0,
) -> Comparison:
    """Pair the cases of two runs of the same suite by id and compare them."""
    b_cases = {c.case_id: c for c in b.cases}
    if a.suite != b.suite or set(b_cases) != {c.case_id for c in a.cases}:
        raise InputError(f"runs of different cases cannot be compared ({a.suite!r} and {b.suite!r})")
    pairs = tuple(
        CaseDiff(c.case_id, c.score, b_cases[c.case_id].score, c.passed, b_cases[c.case_id].passed)
        for c in a.cases
    )
    diffs = [p.diff for p in pairs]
    low, high = paired_bootstrap(diffs, resamples, confidence, seed)
    mean = float(np.mean(diffs))
    return Comparison(a.target, b.target, pairs, mean, low, high, confidence, verdict_of(low, high, margin))
