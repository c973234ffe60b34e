"""The shipped handbook suite's cases on the embedded models (slow: the real generator and embedder)."""

from __future__ import annotations

import asyncio

import pytest

from groundwork.container import Container
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import load_suite
from groundwork.evals.targets import build_target

pytestmark = pytest.mark.slow


def test_shipped_handbook_cases_pass_on_the_embedded_models(embedded_container: Container) -> None:
    shipped = load_suite("handbook")
    picked = [c for c in shipped.cases if c.id in ("annual-leave", "payday", "not-covered-capital")]
    # the session fixture holds the handbook in `default`; the shipped suite ingests into its own collection
    suite = shipped.model_copy(
        update={"cases": picked, "target": shipped.target.model_copy(update={"collection": "default"})}
    )
    c = embedded_container
    result = asyncio.run(run_suite(suite, build_target(suite, c.eval_deps()), c.evaluator(), concurrency=1))
    assert result.passed, result.to_dict()
    assert [case.case_id for case in result.cases] == ["annual-leave", "payday", "not-covered-capital"]
    assert result.metric_means()["context_recall"] == 1.0
    assert result.cases[0].output is not None and result.cases[0].output.prompt == "rag.answer@1"
