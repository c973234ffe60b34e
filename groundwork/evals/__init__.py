"""The evaluation harness: suites, assertions, RAG metrics, runner, comparison, reports, gated promotion."""

from groundwork.evals.assertions import Evaluator
from groundwork.evals.compare import Comparison, compare_runs
from groundwork.evals.results import CaseResult, SuiteRun
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import Suite, load_suite, parse_suite
from groundwork.evals.targets import EvalDeps, build_target

__all__ = [
    "CaseResult",
    "Comparison",
    "EvalDeps",
    "Evaluator",
    "Suite",
    "SuiteRun",
    "build_target",
    "compare_runs",
    "load_suite",
    "parse_suite",
    "run_suite",
]
