"""The evaluation harness: suites, assertions, the judge, metrics, runner, comparison and the gate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from groundwork.container import Container
from groundwork.errors import InputError, JudgeOutputError, ModelError, NotFoundError
from groundwork.evals import rag_metrics
from groundwork.evals.assertions import Evaluator, check
from groundwork.evals.compare import compare_runs, paired_bootstrap, verdict_of
from groundwork.evals.gate import GateOptions, decide, promote
from groundwork.evals.judge import LLMJudge, VerdictFormatError, parse_verdict
from groundwork.evals.rag_metrics import Context
from groundwork.evals.results import CaseOutput, CaseResult, SuiteRun
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import AssertionSpec, Case, load_suite, parse_suite
from groundwork.evals.targets import build_target
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.prompts.builtin import EVAL_JUDGE_TEMPLATE, RAG_ANSWER, RAG_ANSWER_TEMPLATE
from groundwork.prompts.template import PromptTemplate
from tests.evals_fixtures import WORSE_MARK

LEAVE_CASES: list[dict[str, Any]] = [
    {
        "id": "annual-leave",
        "question": "How many days of annual leave do full-time staff get?",
        "expected": "27 days",
        "gold_documents": ["leave-policy.md"],
        "assert": [{"type": "contains", "value": "27"}],
    },
    {
        "id": "probation",
        "question": "How long is the probation period for new employees?",
        "gold_documents": ["onboarding-first-week.md"],
        "assert": [{"type": "contains", "value": "6 months"}],
    },
    {
        "id": "free-plan",
        "question": "How many tables can a customer index on Beacon's free plan?",
        "gold_documents": ["beacon-product-faq.md"],
        "assert": [{"type": "contains", "value": "500 tables"}],
    },
    {
        "id": "password",
        "question": "What is the minimum length for a work password?",
        "gold_documents": ["information-security-policy.md"],
        "assert": [{"type": "contains", "value": "16"}],
    },
    {
        "id": "world-cup",
        "question": "Who won the 2018 FIFA World Cup in Russia?",
        "assert": [{"type": "refusal"}],
    },
]


def rag_suite(**extra: Any) -> dict[str, Any]:
    return {
        "name": "leave",
        "target": {"kind": "rag", "prompt": "rag.answer@production"},
        "assert": [
            {"type": "citation", "documents": None},
            {"type": "metric", "metric": "faithfulness", "threshold": 0.5},
        ],
        "thresholds": {"pass_rate": 1.0, "metrics": {"context_recall": 0.75}},
        "cases": LEAVE_CASES,
        **extra,
    }


def out(text: str, **kw: Any) -> CaseOutput:
    return CaseOutput(text, kw.pop("latency_s", 0.1), **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


EV = Evaluator(FakeEmbedder())


# --- suites ----------------------------------------------------------------------------------------


def test_suite_errors_name_the_key() -> None:
    with pytest.raises(InputError, match=r"cases\.0: Value error|a 'rag' target needs a question"):
        parse_suite({"name": "s", "cases": [{"id": "a", "vars": {"x": 1}}]})
    with pytest.raises(InputError, match=r"cases\.0\.assert\.0: a 'judge' assertion needs rubric"):
        parse_suite({"name": "s", "cases": [{"id": "a", "question": "q", "assert": [{"type": "judge"}]}]})
    with pytest.raises(InputError, match=r"repeated: \['a'\]"):
        parse_suite({"name": "s", "cases": [{"id": "a", "question": "q"}, {"id": "a", "question": "r"}]})
    with pytest.raises(InputError, match=r"cases\.0\.asert: Extra inputs"):
        parse_suite({"name": "s", "cases": [{"id": "a", "question": "q", "asert": []}]})
    with pytest.raises(InputError, match="needs `prompt: name@ref`"):
        parse_suite({"name": "s", "target": {"kind": "prompt"}, "cases": [{"id": "a"}]})
    with pytest.raises(NotFoundError, match="shipped suites: handbook"):
        load_suite("no-such-suite")


def test_the_shipped_handbook_suite_loads() -> None:
    suite = load_suite("handbook")
    assert suite.target.kind == "rag" and len(suite.cases) >= 10
    assert any(a.type == "refusal" for c in suite.cases for a in c.assertions)


# --- assertions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "text", "passed"),
    [
        ({"type": "equals", "value": "Yes"}, " yes ", True),
        ({"type": "equals", "value": "Yes", "case_sensitive": True}, "yes", False),
        ({"type": "contains", "value": ["£210", "210 pounds"]}, "up to £210 a night", True),
        ({"type": "contains"}, "it is 27 days", True),  # the case's expected value
        ({"type": "not_contains", "value": "sorry"}, "Sorry, no.", False),
        ({"type": "regex", "value": r"\b\d{2} days\b"}, "27 days", True),
        ({"type": "regex", "value": r"^\d+$"}, "27 days", False),
        ({"type": "latency", "max_ms": 50}, "x", False),
        ({"type": "cost", "max_cost": 0.01}, "x", True),
        ({"type": "refusal"}, "I don't know.", True),
        ({"type": "refusal", "expected": False}, "The documents do not say.", False),
        (
            {"type": "similarity", "value": "annual leave days", "threshold": 0.5},
            "days of annual leave",
            True,
        ),
        ({"type": "similarity", "value": "pension scheme", "threshold": 0.5}, "days of annual leave", False),
    ],
)
def test_assertions(spec: dict[str, Any], text: str, passed: bool) -> None:
    case = Case(id="c", question="q", expected="27 days")
    result = run(check(AssertionSpec.model_validate(spec), case, out(text, cost=0.001), EV))
    assert result.passed is passed, result.detail
    assert result.score == (pytest.approx(result.score) if spec["type"] == "similarity" else float(passed))


def test_json_schema_assertion_names_the_failing_field() -> None:
    schema = {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer"}}}
    spec = AssertionSpec(type="json_schema", value=schema)
    case = Case(id="c", question="q")
    assert run(check(spec, case, out('```json\n{"days": 27}\n```'), EV)).passed
    bad = run(check(spec, case, out('{"days": "27"}'), EV))
    assert not bad.passed and bad.detail.startswith("days:")
    assert "not JSON" in run(check(spec, case, out("twenty-seven"), EV)).detail


def test_citation_assertion_matches_file_names_and_ids() -> None:
    cited = (Context("doc-1", "/x/handbook/leave-policy.md", "..."),)
    case = Case(id="c", question="q", gold_documents=["leave-policy.md"])
    spec = AssertionSpec(type="citation")
    assert run(check(spec, case, out("a [1]", citations=cited), EV)).passed
    miss = run(check(AssertionSpec(type="citation", documents=["travel-policy.md"]), case, out("a"), EV))
    assert not miss.passed and "travel-policy.md" in miss.detail


# --- the judge -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "score", "passed"),
    [
        ('{"score": 0.8, "pass": true, "reason": "ok"}', 0.8, True),
        ('Sure! ```json\n{"score": 0.3, "pass": false, "reason": "wrong"}\n``` Hope it helps', 0.3, False),
        ("{'score': 1, 'pass': True, 'reason': 'fine',}", 1.0, True),
        ("Score: 7/10. Pass: yes. Reason: mostly right", 0.7, True),
        ('{"score": "0.2"}', 0.2, False),
    ],
)
def test_parse_verdict_repairs_common_defects(reply: str, score: float, passed: bool) -> None:
    verdict = parse_verdict(reply)
    assert verdict.score == pytest.approx(score) and verdict.passed is passed
    clean = reply.startswith('{"score": ')  # valid JSON as it stands: nothing to repair
    assert verdict.repaired is not clean


@pytest.mark.parametrize("reply", ["I think it is good.", '{"pass": true}', '{"score": 3}', '{"score": [1]}'])
def test_parse_verdict_refuses_what_it_cannot_repair(reply: str) -> None:
    with pytest.raises(VerdictFormatError):
        parse_verdict(reply)


def test_judge_retries_after_malformed_output_then_reads_the_valid_one() -> None:
    model = FakeChatModel()
    model.enqueue("The answer looks good to me!", '{"score": 0.9, "pass": true, "reason": "cites 27 days"}')
    judge = LLMJudge(model, EVAL_JUDGE_TEMPLATE, attempts=3)
    verdict = run(judge.grade("States the number of days.", "27 days [1]", "How many days?", "27 days"))
    assert (verdict.score, verdict.passed, verdict.attempts) == (0.9, True, 2)
    assert len(model.calls) == 2
    retry = model.calls[1]
    assert retry[-2].content == "The answer looks good to me!" and "could not be read" in retry[-1].content
    assert "States the number of days." in model.calls[0][1].content


def test_judge_gives_up_with_every_reply_listed() -> None:
    model = FakeChatModel()
    model.enqueue("no", "still no", "nope")
    with pytest.raises(JudgeOutputError, match="no readable verdict in 3 attempts") as info:
        run(LLMJudge(model, EVAL_JUDGE_TEMPLATE, attempts=3).grade("r", "o"))
    assert info.value.details["replies"] == ["no", "still no", "nope"]
    assert isinstance(info.value, ModelError)


# --- metrics ---------------------------------------------------------------------------------------


def test_rag_metrics() -> None:
    ctx = [
        Context("d1", "/h/travel-policy.md", "Hotels in London cost at most 210 pounds a night."),
        Context("d2", "/h/leave-policy.md", "Full-time staff get 27 days of annual leave."),
        Context("d3", "/h/leave-policy.md", "Carry over up to 5 days."),
    ]
    gold = ["leave-policy.md"]
    assert rag_metrics.context_recall(ctx, gold) == 1.0
    assert rag_metrics.context_recall(ctx, ["leave-policy.md", "remote-work.md"]) == 0.5
    assert rag_metrics.context_precision(ctx, gold) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert rag_metrics.context_precision(ctx[1:], gold) == 1.0
    assert rag_metrics.context_recall(ctx, []) is None
    answer = "Full-time staff get 27 days of annual leave [1]. Staff also get 12 free lunches every week."
    assert rag_metrics.faithfulness(answer, ctx) == 0.5
    assert rag_metrics.faithfulness("I don't know.", ctx) is None
    emb = FakeEmbedder()
    assert rag_metrics.answer_relevance("annual leave days", "27 days of annual leave", emb) > 0.5  # type: ignore[operator]


# --- runner ----------------------------------------------------------------------------------------


def test_rag_suite_runs_every_case_and_checks_thresholds(eval_container: Container) -> None:
    suite = parse_suite(rag_suite())
    progress: list[tuple[int, int]] = []
    target = build_target(suite, eval_container.eval_deps())
    result = run(
        run_suite(suite, target, eval_container.evaluator(), 3, lambda d, t, _: progress.append((d, t)))
    )
    assert result.passed, [c.to_dict() for c in result.cases if not c.passed]
    assert sorted(progress) == [(i, 5) for i in range(1, 6)]
    assert [c.case_id for c in result.cases] == [c["id"] for c in LEAVE_CASES]
    assert result.cases[0].output is not None and result.cases[0].output.prompt == "rag.answer@1"
    means = result.metric_means()
    assert means["context_recall"] == 1.0 and means["faithfulness"] == 1.0
    assert 0 < means["answer_relevance"] <= 1
    world_cup = result.cases[-1]
    assert world_cup.metrics["context_recall"] is None  # no gold documents: does not apply
    assert result.to_dict()["cases"][0]["cited"][0].endswith("leave-policy.md")


class _Flaky:
    """A target whose second case fails, and that records how many cases run at once."""

    rag = False
    name = "flaky"

    def __init__(self) -> None:
        self.running = self.peak = 0

    async def run(self, case: Case) -> CaseOutput:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        if case.id == "b":
            raise NotFoundError("model group 'gone' is not configured")
        return out(f"answer {case.id}")


def test_a_broken_case_is_reported_and_the_suite_goes_on() -> None:
    suite = parse_suite(
        {
            "name": "s",
            "target": {"kind": "model"},
            "assert": [{"type": "contains", "value": "answer"}],
            "thresholds": {"pass_rate": 0.5},
            "cases": [{"id": i, "question": "q"} for i in "abcdef"],
        }
    )
    target = _Flaky()
    result = run(run_suite(suite, target, EV, concurrency=2))
    broken = [c for c in result.cases if c.error]
    assert [c.case_id for c in broken] == ["b"] and "model group 'gone'" in (broken[0].error or "")
    assert broken[0].score == 0 and not broken[0].passed
    assert result.pass_rate == pytest.approx(5 / 6) and result.passed and result.broken == 1
    assert target.peak == 2


def test_a_judge_that_never_answers_breaks_only_its_case(eval_container: Container) -> None:
    suite = parse_suite(
        {
            "name": "judged",
            "target": {"kind": "model"},
            "assert": [{"type": "judge", "rubric": "Is it polite?"}],
            "cases": [{"id": "a", "question": "hello"}, {"id": "b", "question": "bye"}],
        }
    )
    judge_model = FakeChatModel()
    judge_model.enqueue("???", "???", "???", '{"score": 1, "pass": true, "reason": "polite"}')
    ev = Evaluator(FakeEmbedder(), LLMJudge(judge_model, EVAL_JUDGE_TEMPLATE, attempts=3))
    target = build_target(suite, eval_container.eval_deps())
    result = run(run_suite(suite, target, ev, concurrency=1))
    assert "JudgeOutputError" in (result.cases[0].error or "")
    assert result.cases[1].passed and result.cases[1].assertions[0].score == 1.0
    assert result.failures == ("pass rate 50% (1/2) is below 100%",)


def test_a_prompt_target_renders_each_case_strictly(eval_container: Container) -> None:
    eval_container.prompts.create("greet", PromptTemplate(text="Say hello to {{ name }}"))
    suite = parse_suite(
        {
            "name": "greet",
            "target": {"kind": "prompt", "prompt": "greet@latest"},
            "assert": [{"type": "contains", "value": "Ann"}],
            "cases": [{"id": "ok", "vars": {"name": "Ann"}}, {"id": "typo", "vars": {"nmae": "Ann"}}],
        }
    )
    result = run(run_suite(suite, build_target(suite, eval_container.eval_deps()), EV))
    assert result.cases[0].passed and result.cases[0].output.prompt == "greet@1"  # type: ignore[union-attr]
    assert "unexpected variable 'nmae'" in (result.cases[1].error or "")


# --- comparison and the gate -------------------------------------------------------------------------


def test_paired_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    diffs = [0.1, 0.2, 0.0, 0.3, 0.1, 0.2]
    low, high = paired_bootstrap(diffs, 2000, 0.95, seed=1)
    assert (low, high) == paired_bootstrap(diffs, 2000, 0.95, seed=1)
    assert 0 <= low < sum(diffs) / len(diffs) < high
    assert paired_bootstrap([0.0] * 5) == (0.0, 0.0)
    assert verdict_of(0.01, 0.2) == "better" and verdict_of(-0.3, -0.1) == "worse"
    assert verdict_of(-0.1, 0.2) == "no_difference" and verdict_of(-0.3, -0.05, margin=0.1) == "no_difference"


def _run(name: str, scores: list[float]) -> SuiteRun:
    cases = []
    for i, s in enumerate(scores):
        spec_result = (("contains", s >= 1.0, s),)
        from groundwork.evals.results import AssertionResult

        assertions = tuple(AssertionResult(t, p, v) for t, p, v in spec_result)
        cases.append(CaseResult(f"c{i}", "q", out("x"), assertions))
    return SuiteRun("s", name, tuple(cases), 1.0)


def test_compare_runs_pairs_cases_and_decides() -> None:
    a, b = _run("A", [1, 1, 0, 1, 1, 0, 1, 1]), _run("B", [0, 0, 0, 1, 0, 0, 0, 0])
    comparison = compare_runs(a, b)
    assert comparison.verdict == "worse" and comparison.mean_diff == pytest.approx(-5 / 8)
    assert comparison.ci_high < 0 and "B is worse" in comparison.summary()
    assert compare_runs(a, a).verdict == "no_difference"
    assert compare_runs(b, a).verdict == "better"
    allowed, reasons = decide(b, comparison)
    assert not allowed and any("significantly worse than A" in r for r in reasons)
    with pytest.raises(InputError, match="different cases"):
        compare_runs(a, _run("C", [1, 1]))


def test_the_gate_policy() -> None:
    good, bad = _run("A", [1, 1, 1]), SuiteRun("s", "B", _run("B", [1, 0, 1]).cases, 1.0, ("pass rate 67%",))
    assert decide(good, None) == (
        True,
        ("suite 's' passed (100% of cases)", "no version holds the label yet: nothing to compare with"),
    )
    allowed, reasons = decide(bad, None)
    assert not allowed and reasons[0] == "suite 's' failed: pass rate 67%"
    allowed, reasons = decide(good, compare_runs(_run("P", [1, 1, 0]), good))
    assert allowed and "not significantly worse than P" in reasons[1]


def test_a_deliberately_worse_prompt_loses_the_comparison_and_is_refused(eval_container: Container) -> None:
    prompts = eval_container.prompts
    good = RAG_ANSWER_TEMPLATE
    worse = PromptTemplate(
        kind="chat",
        messages=(("system", f"{WORSE_MARK}: answer anything."), good.messages[1]),
        variables=good.variables,
    )
    v2 = prompts.create(RAG_ANSWER, worse, "mallory", "more engaging")
    suite = parse_suite(rag_suite())
    deps, ev = eval_container.eval_deps(), eval_container.evaluator()
    run_a = run(run_suite(suite, build_target(suite, deps, "1"), ev))
    run_b = run(run_suite(suite, build_target(suite, deps, "2"), ev))
    assert run_b.cases[0].output.prompt == "rag.answer@2"  # type: ignore[union-attr]
    comparison = compare_runs(run_a, run_b)
    assert comparison.verdict == "worse", comparison.summary()
    assert run_a.passed and not run_b.passed

    decision = run(promote(suite, deps, ev, RAG_ANSWER, v2.version, "production", GateOptions(concurrency=2)))
    assert not decision.allowed
    assert any("significantly worse than rag rag.answer@1" in r for r in decision.reasons), decision.reasons
    assert any("failed: faithfulness" in r or "failed: pass rate" in r for r in decision.reasons)
    assert prompts.get(RAG_ANSWER, "production").version == 1  # the label did not move


def test_a_version_that_holds_up_is_promoted_with_the_evidence(eval_container: Container) -> None:
    prompts = eval_container.prompts
    reworded = PromptTemplate(
        kind="chat",
        messages=(
            ("system", RAG_ANSWER_TEMPLATE.messages[0][1] + " Be concise."),
            RAG_ANSWER_TEMPLATE.messages[1],
        ),
        variables=RAG_ANSWER_TEMPLATE.variables,
    )
    v2 = prompts.create(RAG_ANSWER, reworded, "ann", "concise")
    suite = parse_suite(rag_suite())
    decision = run(
        promote(suite, eval_container.eval_deps(), eval_container.evaluator(), RAG_ANSWER, 2, "production")
    )
    assert decision.allowed, decision.reasons
    assert decision.comparison is not None and decision.comparison.verdict == "no_difference"
    assert prompts.get(RAG_ANSWER, "production") == v2
    event = prompts.store.label_events(RAG_ANSWER, "production")[-1]
    assert event.reason.startswith("gate: suite 'leave' passed") and event.previous == 1
    answer = run(eval_container.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.prompt == "rag.answer@2"  # answers follow the label


def test_the_gate_refuses_a_suite_of_another_prompt(eval_container: Container) -> None:
    suite = parse_suite(rag_suite())
    with pytest.raises(InputError, match=r"not prompt 'evals\.judge'"):
        run(
            promote(
                suite, eval_container.eval_deps(), eval_container.evaluator(), "evals.judge", 1, "production"
            )
        )
