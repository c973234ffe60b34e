"""Evaluation suites: a YAML file of cases, assertions and thresholds, validated on load.

::

    name: handbook
    target:
      kind: rag                    # rag | prompt | model
      collection: handbook-eval
      prompt: rag.answer@production
      ingest: [samples:handbook]   # ingested (incrementally) before the run; paths relative to this file
    concurrency: 2
    assert:                        # applied to every case
      - {type: latency, max_ms: 60000}
    thresholds:
      pass_rate: 0.8
      metrics: {context_recall: 0.8}
    cases:
      - id: annual-leave
        question: How many days of annual leave do full-time staff get?
        expected: 27 days
        gold_documents: [leave-policy.md]
        assert:
          - {type: contains, value: "27"}
          - {type: citation}         # cites a gold document

A case's score is the weighted mean of its assertions' scores (0..1); it passes when every assertion
passes. The suite passes when every threshold holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from groundwork.errors import InputError, NotFoundError

AssertionType = Literal[
    "equals",
    "contains",
    "not_contains",
    "regex",
    "json_schema",
    "similarity",
    "judge",
    "latency",
    "cost",
    "citation",
    "refusal",
    "metric",
]
MetricName = Literal["context_recall", "context_precision", "faithfulness", "answer_relevance"]
SUITES_DIR = Path(__file__).parent / "suites"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AssertionSpec(_Strict):
    """One check of a case's output. Which fields apply depends on ``type`` (checked on load)."""

    type: AssertionType
    value: Any = Field(
        default=None,
        description="equals/contains/not_contains: text (or a list: any of them); regex: the pattern; "
        "json_schema: the schema; similarity: the reference (default: the case's `expected`).",
    )
    case_sensitive: bool = False
    threshold: float | None = Field(default=None, ge=-1, le=1, description="similarity / judge / metric.")
    rubric: str | None = None
    max_ms: float | None = Field(default=None, gt=0)
    max_cost: float | None = Field(default=None, ge=0)
    documents: list[str] | None = Field(default=None, description="citation: default the gold documents.")
    expected: bool = Field(default=True, description="refusal: whether the output should refuse.")
    metric: MetricName | None = None
    weight: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _fields_for_type(self) -> AssertionSpec:
        needs: dict[str, tuple[str, ...]] = {
            "regex": ("value",),
            "not_contains": ("value",),
            "json_schema": ("value",),
            "judge": ("rubric",),
            "latency": ("max_ms",),
            "cost": ("max_cost",),
            "metric": ("metric", "threshold"),
        }
        missing = [f for f in needs.get(self.type, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.type!r} assertion needs {', '.join(missing)}")
        if self.type == "json_schema" and not isinstance(self.value, dict):
            raise ValueError("a 'json_schema' assertion's value must be a JSON schema (a mapping)")
        return self


class Case(_Strict):
    """One input and what its output must satisfy."""

    id: str = Field(min_length=1, max_length=200)
    question: str | None = Field(default=None, description="rag and model targets: the question asked.")
    vars: dict[str, Any] = Field(default_factory=dict, description="prompt targets: template variables.")
    expected: str | None = None
    gold_documents: list[str] = Field(default_factory=list, description="Documents that answer it.")
    assertions: list[AssertionSpec] = Field(default_factory=list, alias="assert")

    @property
    def input_text(self) -> str:
        """What the case asks, for judges and reports."""
        if self.question is not None:
            return self.question
        return "\n".join(f"{k}: {v}" for k, v in self.vars.items())


class TargetSpec(_Strict):
    """What the suite evaluates: the RAG pipeline, a prompt version, or a model group."""

    kind: Literal["rag", "prompt", "model"] = "rag"
    prompt: str | None = Field(default=None, description="name@ref; rag default: prompts.answer_prompt.")
    model: str | None = Field(default=None, description="Model group (default: models.default_group).")
    collection: str = "default"
    system: str | None = Field(default=None, description="model targets: an optional system message.")
    ingest: list[str] = Field(default_factory=list, description="Paths ingested first; samples:handbook.")

    @model_validator(mode="after")
    def _prompt_target_names_prompt(self) -> TargetSpec:
        if self.kind == "prompt" and not self.prompt:
            raise ValueError("a 'prompt' target needs `prompt: name@ref`")
        return self


class Thresholds(_Strict):
    """Suite-level conditions: all must hold for the suite to pass."""

    pass_rate: float = Field(default=1.0, ge=0, le=1, description="Share of cases that pass.")
    mean_score: float | None = Field(default=None, ge=0, le=1)
    metrics: dict[MetricName, float] = Field(default_factory=dict, description="Minimum metric means.")


class Suite(_Strict):
    """A validated evaluation suite."""

    name: str = Field(min_length=1)
    description: str = ""
    target: TargetSpec = Field(default_factory=TargetSpec)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    assertions: list[AssertionSpec] = Field(default_factory=list, alias="assert")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    cases: list[Case] = Field(min_length=1)
    base_dir: Path = Field(default=Path("."), exclude=True, description="Where relative paths start.")

    @model_validator(mode="after")
    def _cases_fit_the_target(self) -> Suite:
        ids = [c.id for c in self.cases]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"case ids must be unique; repeated: {dupes}")
        if self.target.kind in ("rag", "model"):
            missing = [c.id for c in self.cases if not c.question]
            if missing:
                raise ValueError(f"a {self.target.kind!r} target needs a question in every case: {missing}")
        return self

    def ingest_paths(self) -> list[Path]:
        """The paths ``target.ingest`` names (``samples:handbook``: the bundled handbook)."""
        from groundwork.samples import handbook_dir

        return [
            handbook_dir() if p == "samples:handbook" else (self.base_dir / p).resolve()
            for p in self.target.ingest
        ]

    def assertions_of(self, case: Case) -> list[AssertionSpec]:
        """The suite's assertions followed by the case's own."""
        return [*self.assertions, *case.assertions]


def parse_suite(data: Mapping[str, Any], base_dir: Path = Path("."), source: str = "suite") -> Suite:
    """Validate a suite's mapping; errors name the key (``cases.3.assert.0: ...``)."""
    try:
        return Suite.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"  {key}: {err['msg'].removeprefix('Value error, ')}")
        raise InputError(f"invalid evaluation suite {source}:\n" + "\n".join(problems)) from None


def shipped_suite_path(name: str) -> Path:
    """The file of a suite shipped in the package (``handbook``); NotFoundError lists them."""
    shipped = SUITES_DIR / f"{name}.yaml"
    names = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    if name not in names:
        raise NotFoundError(f"no suite file {name} (shipped suites: {', '.join(names)})")
    return shipped


def load_suite(ref: str | Path) -> Suite:
    """Load a suite from a YAML file, or a shipped one by name (``handbook``)."""
    path = Path(ref)
    if not path.is_file():
        path = shipped_suite_path(str(ref))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a mapping (name, target, cases, ...)")
    return parse_suite(data, path.parent, str(path))
