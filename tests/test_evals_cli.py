"""`groundwork prompts ...` and `groundwork eval ...` as a user runs them, on the fake models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from groundwork.cli.main import app

runner = CliRunner()

SUITE = {
    "name": "replies",
    "target": {"kind": "prompt", "prompt": "support.reply@production"},
    "assert": [{"type": "contains", "value": "politely"}, {"type": "regex", "value": "order \\d+"}],
    "thresholds": {"pass_rate": 1.0},
    "cases": [{"id": f"c{i}", "vars": {"msg": f"Where is order {i}?"}} for i in range(1, 7)],
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose groundwork.yaml selects the fakes (the fake model echoes the prompt)."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    config = tmp_path / "groundwork.yaml"
    text = config.read_text().replace("provider: minilm", "provider: fake")
    config.write_text(text.replace("provider: embedded", "provider: fake"))
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(SUITE))
    return tmp_path


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_prompts_commands(project: Path) -> None:
    assert "rag.answer" in ok("prompts", "list") and "production=1" in ok("prompts", "list")
    (project / "t.yaml").write_text(
        yaml.safe_dump({"text": "Reply politely to: {{ msg }}", "variables": {"msg": {"max_length": 40}}})
    )
    assert "created support.reply@1" in ok(
        "prompts", "create", "support.reply", "-f", "t.yaml", "-m", "first"
    )
    assert "unchanged" in ok("prompts", "create", "support.reply", "-f", "t.yaml")
    assert "created support.reply@2" in ok("prompts", "create", "support.reply", "--text", "{{ msg }}")
    assert "-> 1" in ok("prompts", "label", "support.reply", "production", "--version", "1")
    shown = json.loads(ok("prompts", "show", "support.reply", "--version", "production", "--json"))
    assert shown["version"] == 1 and shown["labels"] == {"production": 1, "latest": 2}
    rendered = json.loads(ok("prompts", "render", "support.reply", "--var", "msg=Hi {{ x }}", "--json"))
    assert rendered["messages"][0]["content"] == "Reply politely to: Hi {{ x }}"

    bad = runner.invoke(app, ["prompts", "render", "support.reply", "--var", "msg=" + "x" * 50])
    assert bad.exit_code == 2 and "'msg' is 50 characters" in bad.output and "max_length" in bad.output
    missing = runner.invoke(app, ["prompts", "render", "support.reply"])
    assert missing.exit_code == 2 and "missing variable 'msg'" in missing.output

    diff = ok("prompts", "diff", "support.reply", "1", "2")
    assert "-  Reply politely to: {{ msg }}" not in diff and "-Reply politely to: {{ msg }}" in diff
    ok("prompts", "label", "support.reply", "production", "--version", "2")
    assert "-> 1" in ok("prompts", "rollback", "support.reply", "production")
    history = json.loads(ok("prompts", "history", "support.reply", "--json"))
    assert history["label_events"][-1]["reason"] == "rollback"
    assert history["versions"][0]["message"] == "first"
    assert "support.reply" not in ok("prompts", "history", "rag.answer")
    unknown = runner.invoke(app, ["prompts", "show", "nope"])
    assert unknown.exit_code == 2 and "no prompt named 'nope'" in unknown.output


def _two_versions() -> None:
    ok("prompts", "create", "support.reply", "--text", "Reply politely to: {{ msg }}")
    ok("prompts", "create", "support.reply", "--text", "{{ msg }}", "-m", "deliberately worse")
    ok("prompts", "label", "support.reply", "production", "--version", "1")


def test_eval_writes_reports_and_fails_on_thresholds(project: Path) -> None:
    _two_versions()
    out = ok("eval", "suite.yaml", "--report", "run.html", "--json", "run.json")
    assert "PASS pass rate 100%" in out
    html = (project / "run.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "c6" in html
    assert "<script" not in html and "src=" not in html and "href=" not in html  # self-contained
    data = json.loads((project / "run.json").read_text())
    assert data["run"]["passed"] and data["run"]["cases"][0]["prompt"] == "support.reply@1"

    (project / "failing.yaml").write_text(
        yaml.safe_dump({**SUITE, "target": {**SUITE["target"], "prompt": "support.reply@2"}})
    )
    result = runner.invoke(app, ["eval", "failing.yaml"])
    assert result.exit_code == 1 and "pass rate 0% (0/6) is below 100%" in result.output


def test_eval_compare_reports_the_verdict(project: Path) -> None:
    _two_versions()
    result = runner.invoke(
        app, ["eval", "suite.yaml", "--compare", "1", "2", "--report", "cmp.html", "--json", "c.json"]
    )
    assert result.exit_code == 1, result.output  # version 2 fails the thresholds
    assert "B is worse" in result.output
    comparison = json.loads((project / "c.json").read_text())["comparison"]
    assert comparison["verdict"] == "worse" and comparison["mean_diff"] == -0.5
    assert comparison["ci"] == [-0.5, -0.5]
    html = (project / "cmp.html").read_text()
    assert "B is worse" in html and html.count("<svg") >= 4


def test_gated_promotion_refuses_a_worse_version_and_accepts_a_good_one(project: Path) -> None:
    _two_versions()
    refused = runner.invoke(
        app, ["prompts", "label", "support.reply", "production", "--version", "2", "--gate", "suite.yaml"]
    )
    assert refused.exit_code == 1, refused.output
    assert "refused" in refused.output and "significantly worse" in refused.output
    assert "pass rate 0% (0/6) is below 100%" in refused.output
    assert json.loads(ok("prompts", "show", "support.reply", "-v", "production", "--json"))["version"] == 1

    ok("prompts", "create", "support.reply", "--text", "Please reply politely to: {{ msg }}")
    promoted = ok(
        "prompts",
        "label",
        "support.reply",
        "production",
        "--version",
        "3",
        "--gate",
        "suite.yaml",
        "--report",
        "g.html",
    )
    assert "promoted support.reply@3 to production" in promoted and "no significant difference" in promoted
    assert json.loads(ok("prompts", "show", "support.reply", "-v", "production", "--json"))["version"] == 3
    assert (project / "g.html").read_text().count("<svg") >= 2
    last = json.loads(ok("prompts", "history", "support.reply", "--json"))["label_events"][-1]
    assert last["reason"].startswith("gate: suite 'replies' passed") and last["version"] == 3


def test_gate_needs_a_suite_of_the_same_prompt(project: Path) -> None:
    _two_versions()
    result = runner.invoke(
        app, ["prompts", "label", "rag.answer", "production", "--version", "1", "--gate", "suite.yaml"]
    )
    assert result.exit_code == 2 and "not prompt 'rag.answer'" in result.output
