"""``groundwork traces list|show`` and ``groundwork stats`` over a trace store a server wrote."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from groundwork.api import create_app
from groundwork.cli.main import app
from groundwork.cli.traces import parse_since
from groundwork.container import Container
from groundwork.errors import InputError, UpstreamError
from groundwork.models.fake import FakeChatModel
from tests.conftest import fake_settings

runner = CliRunner()
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def served(tmp_path: Path) -> tuple[Path, list[str]]:
    """A data dir whose trace store holds 3 chat requests (one failed, one a cache hit)."""
    data = tmp_path / "data"
    c = Container(fake_settings(data, cache={"enabled": True}, router={"num_retries": 0}))
    model = c.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    ids = []

    async def run() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(c)), base_url="http://gw"
        ) as cl:
            for _ in range(2):
                ids.append((await cl.post("/v1/chat/completions", json=CHAT)).headers["x-trace-id"])
            model.enqueue(UpstreamError("down"))
            r = await cl.post(
                "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "x"}]}
            )
            assert r.status_code == 503
            ids.append(r.headers["x-trace-id"])

    import anyio

    anyio.run(run)
    assert c.observability is not None and c.observability.tracing.force_flush(5)
    c.close()
    return data, ids


def test_traces_list_and_show(served: tuple[Path, list[str]]) -> None:
    data, ids = served
    result = runner.invoke(app, ["traces", "list", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert all(i in result.output for i in ids)
    assert "POST /v1/chat/completions" in result.output and "503" in result.output and "hit" in result.output
    shown = runner.invoke(app, ["traces", "show", ids[0], "--data-dir", str(data)])
    assert shown.exit_code == 0, shown.output
    assert "model.attempt" in shown.output and "cache.lookup" in shown.output
    missing = runner.invoke(app, ["traces", "show", "0" * 32, "--data-dir", str(data)])
    assert missing.exit_code == 2 and "no trace" in missing.output


def test_stats(served: tuple[Path, list[str]]) -> None:
    data, _ = served
    result = runner.invoke(app, ["stats", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "requests" in result.output and " 3" in result.output
    assert "33.3% of 3 lookups" in result.output  # one hit of three lookups
    assert "upstream: 1" in result.output
    assert runner.invoke(app, ["stats", "--since", "1h", "--data-dir", str(data)]).exit_code == 0


def test_no_trace_store_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["traces", "list", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 2 and "groundwork serve" in result.output


def test_parse_since() -> None:
    assert parse_since(None) == 0
    assert parse_since("2h", now=10_000.0) == int((10_000 - 7200) * 1e9)
    with pytest.raises(InputError, match="unit"):
        parse_since("yesterday")


def test_rated_answers_export_to_a_suite_and_fine_tuning_jsonl(tmp_path: Path) -> None:
    """Answer over HTTP, rate it with POST /v1/feedback, export: the suite loads, the JSONL is chat data."""
    import json

    import yaml

    from groundwork.evals.suite import parse_suite
    from groundwork.samples import handbook_dir

    data = tmp_path / "data"
    c = Container(fake_settings(data, router={"num_retries": 0}))
    c.ingestor.ingest_paths([handbook_dir()], collection="handbook")
    questions = ["How many days of annual leave do full-time staff get?", "Can I work from abroad?"]

    async def run() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(c)), base_url="http://gw"
        ) as cl:
            for q, score in zip(questions, (1.0, 0.0), strict=True):
                r = await cl.post("/v1/answers", json={"question": q, "collection": "handbook"})
                assert r.status_code == 200, r.text
                fb = {"trace_id": r.json()["trace_id"], "score": score, "comment": "checked by hand"}
                assert (await cl.post("/v1/feedback", json=fb)).status_code in (200, 201)

    import anyio

    anyio.run(run)
    assert c.observability is not None and c.observability.tracing.force_flush(5)
    c.close()

    suite_file, jsonl_file = tmp_path / "feedback.yaml", tmp_path / "train.jsonl"
    r = runner.invoke(app, ["feedback", "export", "--out", str(suite_file), "--data-dir", str(data)])
    assert r.exit_code == 0, r.output
    assert "2 rated answers (1 good)" in r.output
    suite = parse_suite(yaml.safe_load(suite_file.read_text()), source="exported")
    assert len(suite.cases) == 2
    r = runner.invoke(
        app, ["feedback", "export", "-f", "jsonl", "--out", str(jsonl_file), "--data-dir", str(data)]
    )
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in jsonl_file.read_text().splitlines()]
    assert len(lines) == 1  # only the well-rated answer is training data
    roles = [m["role"] for m in lines[0]["messages"]]
    assert roles[-2:] == ["user", "assistant"] and lines[0]["messages"][-2]["content"] == questions[0]
    assert (
        "27 days" in lines[0]["messages"][-1]["content"] and "[1]" not in lines[0]["messages"][-1]["content"]
    )


def test_feedback_export_without_ratings_says_how(served: tuple[Path, list[str]], tmp_path: Path) -> None:
    data, _ = served
    r = runner.invoke(app, ["feedback", "export", "--out", str(tmp_path / "x.yaml"), "--data-dir", str(data)])
    assert r.exit_code == 2 and "POST /v1/feedback" in r.output


def test_serve_freezes_the_start_up_heap_and_raises_the_gc_threshold_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import uvicorn

    from groundwork.api.server import GC_YOUNG_THRESHOLD

    config = tmp_path / "groundwork.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "embeddings: {provider: fake}\n"
        "security: {auth: false}\n"
        "models: {default_group: fake, groups: {fake: [{provider: fake, model: fake}]}}\n"
    )
    when_serving: list[tuple[int, tuple[int, int, int]]] = []
    monkeypatch.setattr(
        uvicorn.Server,
        "run",
        lambda self, sockets=None: when_serving.append((gc.get_freeze_count(), gc.get_threshold())),
    )
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's defaults
    gc.unfreeze()
    try:
        result = runner.invoke(app, ["serve", "--config", str(config), "--port", "0"])
        assert result.exit_code == 0, result.output
        assert len(when_serving) == 1
        frozen, serving_thresholds = when_serving[0]
        assert frozen > 1000  # the modules, settings and app
        assert serving_thresholds == (GC_YOUNG_THRESHOLD, 10, 10)  # older generations as they were
        assert GC_YOUNG_THRESHOLD > 700
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
        gc.set_threshold(*thresholds)


def test_raise_gc_threshold_sets_the_youngest_generation_only() -> None:
    import gc

    from groundwork.api.server import raise_gc_threshold

    thresholds = gc.get_threshold()
    try:
        gc.set_threshold(700, 20, 30)
        assert raise_gc_threshold(5000) == (5000, 20, 30) == gc.get_threshold()
    finally:
        gc.set_threshold(*thresholds)
