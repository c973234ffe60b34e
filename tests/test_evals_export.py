"""Export of rated answers: an evaluation suite and chat-format JSONL."""

from __future__ import annotations

import asyncio
import json

import yaml

from groundwork.container import Container
from groundwork.evals.export import FeedbackRecord, to_chat_jsonl, to_suite, to_suite_yaml
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import parse_suite
from groundwork.evals.targets import build_target

LEAVE = "How many days of annual leave do full-time staff get?"
RECORDS = [
    FeedbackRecord(
        LEAVE,
        "Full-time employees receive 27 days of annual leave per calendar year. [1]",
        ("leave-policy.md",),
        1.0,
        "spot on",
        "trace-aaaaaaaaaaaaaaaa",
    ),
    FeedbackRecord("What is the capital of Australia?", "Sydney [1]", ("travel-policy.md",), 0.0, "wrong"),
    FeedbackRecord(LEAVE, "27 days [1]", ("leave-policy.md",), 1.0, "", "trace-aaaaaaaaaaaaaaaa"),
    FeedbackRecord("   ", "ignored", (), 1.0),
]


def test_suite_export_is_loadable_and_shaped_by_the_rating() -> None:
    suite = to_suite(RECORDS, name="fb", collection="handbook")
    assert suite["target"] == {"kind": "rag", "collection": "handbook"}
    good, bad, dup = suite["cases"]
    assert good["id"] == "fb-trace-aaaaaa" and dup["id"] == "fb-trace-aaaaaa-2"
    assert good["expected"] == "Full-time employees receive 27 days of annual leave per calendar year."
    assert good["gold_documents"] == ["leave-policy.md"]
    assert [a["type"] for a in good["assert"]] == ["citation", "similarity"]
    assert bad["assert"][0]["type"] == "judge" and "(wrong)" in bad["assert"][0]["rubric"]
    assert "'Sydney'" in bad["assert"][0]["rubric"] and "gold_documents" not in bad
    again = parse_suite(yaml.safe_load(to_suite_yaml(RECORDS, name="fb")))
    assert [c.id for c in again.cases] == [c["id"] for c in suite["cases"]]


def test_chat_jsonl_keeps_only_well_rated_answers() -> None:
    lines = to_chat_jsonl(RECORDS, system="Answer from the handbook.").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first == {
        "messages": [
            {"role": "system", "content": "Answer from the handbook."},
            {"role": "user", "content": LEAVE},
            {
                "role": "assistant",
                "content": "Full-time employees receive 27 days of annual leave per calendar year.",
            },
        ]
    }
    assert [m["role"] for m in json.loads(to_chat_jsonl(RECORDS).splitlines()[0])["messages"]] == [
        "user",
        "assistant",
    ]
    assert to_chat_jsonl(RECORDS, good_score=2.0) == ""


def test_an_exported_good_case_runs_and_passes(eval_container: Container) -> None:
    suite = parse_suite(to_suite(RECORDS[:1]))
    result = asyncio.run(
        run_suite(suite, build_target(suite, eval_container.eval_deps()), eval_container.evaluator())
    )
    assert result.passed, result.to_dict()
