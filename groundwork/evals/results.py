"""The values an evaluation produces: one output per case, its checks, and the suite's run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from groundwork.evals.rag_metrics import Context


@dataclass(frozen=True, slots=True)
class CaseOutput:
    """What a target produced for one case."""

    text: str
    latency_s: float
    cost: float = 0.0
    citations: tuple[Context, ...] = ()
    """The documents the answer cites (RAG targets)."""
    contexts: tuple[Context, ...] = ()
    """The chunks given to the model, best first (RAG targets)."""
    mode: str = ""
    prompt: str = ""
    """``name@version`` of the prompt used, when a prompt was used."""
    draft: str = ""
    """RAG targets: the model's own answer before verification (what faithfulness measures)."""


@dataclass(frozen=True, slots=True)
class AssertionResult:
    """One assertion's outcome: ``score`` in 0..1 and whether it passed."""

    type: str
    passed: bool
    score: float
    detail: str = ""
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "passed": self.passed,
            "score": round(self.score, 4),
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's outcome. A broken case (``error``) has score 0 and fails; the suite goes on."""

    case_id: str
    input: str
    output: CaseOutput | None
    assertions: tuple[AssertionResult, ...] = ()
    metrics: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(a.passed for a in self.assertions)

    @property
    def score(self) -> float:
        """Weighted mean of the assertion scores (1.0 with no assertions, 0.0 when broken)."""
        if self.error is not None:
            return 0.0
        weight = sum(a.weight for a in self.assertions)
        return sum(a.score * a.weight for a in self.assertions) / weight if weight else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = self.output
        return {
            "id": self.case_id,
            "input": self.input,
            "passed": self.passed,
            "score": round(self.score, 4),
            "output": out.text if out else None,
            "latency_s": round(out.latency_s, 4) if out else None,
            "cost": out.cost if out else None,
            "mode": out.mode if out else None,
            "prompt": out.prompt if out else None,
            "cited": sorted({c.source or c.document for c in out.citations}) if out else [],
            "assertions": [a.to_dict() for a in self.assertions],
            "metrics": {k: None if v is None else round(v, 4) for k, v in self.metrics.items()},
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """A suite run against one target: every case, the aggregate numbers and the threshold verdict."""

    suite: str
    target: str
    cases: tuple[CaseResult, ...]
    seconds: float
    failures: tuple[str, ...] = ()
    """Thresholds that did not hold, in words; empty when the suite passed."""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def pass_rate(self) -> float:
        return sum(c.passed for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def mean_score(self) -> float:
        return sum(c.score for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def broken(self) -> int:
        return sum(c.error is not None for c in self.cases)

    def metric_means(self) -> dict[str, float]:
        """Mean of each metric over the cases where it applies."""
        values: dict[str, list[float]] = {}
        for case in self.cases:
            for name, value in case.metrics.items():
                if value is not None:
                    values.setdefault(name, []).append(value)
        return {name: sum(v) / len(v) for name, v in values.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "target": self.target,
            "passed": self.passed,
            "failures": list(self.failures),
            "pass_rate": round(self.pass_rate, 4),
            "mean_score": round(self.mean_score, 4),
            "broken": self.broken,
            "metrics": {k: round(v, 4) for k, v in self.metric_means().items()},
            "seconds": round(self.seconds, 3),
            "cases": [c.to_dict() for c in self.cases],
        }
