"""The prompt registry over HTTP, and answers that name the prompt version they used."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from groundwork.api import create_app
from groundwork.container import Container
from groundwork.models.fake import FakeChatModel
from groundwork.samples import handbook_dir
from groundwork.types import Principal
from tests.conftest import fake_settings

anyio = pytest.mark.anyio
LEAVE = "How many days of annual leave do full-time staff get?"


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(fake_settings(tmp_path / "data", router={"num_retries": 0}, security={"auth": True}))
    yield c
    c.close()


async def _client(c: Container, principal: Principal | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a real API key of ``principal``'s name, role and groups (default: admin "local")."""
    p = principal or Principal("local", "admin")
    token, _ = c.security.keys.create(p.name, p.role, list(p.groups))
    app = create_app(c)
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as client:
        yield client


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(container):
        yield c


@pytest.fixture
async def user_client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(container, Principal("bob", "user")):
        yield c


@anyio
async def test_the_built_in_prompts_are_listed(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/prompts")
    assert r.status_code == 200
    names = {p["name"]: p for p in r.json()["data"]}
    assert names["rag.answer"]["labels"] == {"production": 1, "latest": 1}
    assert names["rag.answer"]["variables"] == ["sources", "question"]
    assert "evals.judge" in names


@anyio
async def test_create_label_render_diff_rollback(client: httpx.AsyncClient) -> None:
    template = {"text": "Hello {{ name }}", "variables": {"name": {"max_length": 10}}}
    r = await client.post("/v1/prompts", json={"name": "greet", "template": template, "message": "first"})
    assert r.status_code == 201 and r.json()["ref"] == "greet@1" and r.json()["author"] == "local"
    again = await client.post("/v1/prompts", json={"name": "greet", "template": template})
    assert again.status_code == 200 and again.json()["created"] is False
    template2 = {**template, "text": "Hi {{ name }}!"}
    assert (await client.post("/v1/prompts", json={"name": "greet", "template": template2})).json()[
        "version"
    ] == 2

    assert (await client.post("/v1/prompts/greet/labels/production", json={"version": 1})).status_code == 200
    moved = await client.post("/v1/prompts/greet/labels/production", json={"version": 2, "reason": "shorter"})
    assert moved.json()["previous"] == 1 and moved.json()["reason"] == "shorter"
    assert (await client.get("/v1/prompts/greet/labels/production")).json()["version"] == 2

    rendered = await client.post("/v1/prompts/greet/render", json={"variables": {"name": "Ann"}})
    assert rendered.json() == {"prompt": "greet@2", "messages": [{"role": "user", "content": "Hi Ann!"}]}
    v1 = await client.post("/v1/prompts/greet/render", json={"version": 1, "variables": {"name": "Ann"}})
    assert v1.json()["messages"][0]["content"] == "Hello Ann"

    diff = (await client.get("/v1/prompts/greet/diff", params={"a": 1, "b": 2})).json()
    assert "-Hello {{ name }}" in diff["diff"] and "+Hi {{ name }}!" in diff["diff"]

    back = await client.post("/v1/prompts/greet/labels/production/rollback")
    assert back.status_code == 200 and back.json()["version"] == 1
    history = (await client.get("/v1/prompts/greet/versions")).json()
    assert [v["version"] for v in history["data"]] == [1, 2]
    assert [e["version"] for e in history["label_events"]] == [1, 2, 1]
    assert (await client.get("/v1/prompts/greet/versions/latest")).json()["version"] == 2


@anyio
async def test_errors_name_the_problem(client: httpx.AsyncClient) -> None:
    await client.post("/v1/prompts", json={"name": "greet", "template": {"text": "Hi {{ name }}"}})
    r = await client.post("/v1/prompts/greet/render", json={"version": "latest", "variables": {}})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "missing variable 'name'" in error["message"]
    assert error["param"] == "variables.name" and error["type"] == "PromptVariableError"
    r = await client.post(
        "/v1/prompts/greet/render", json={"version": "latest", "variables": {"name": "A", "x": 1}}
    )
    assert r.status_code == 400 and "unexpected variable 'x'" in r.json()["error"]["message"]
    assert (await client.get("/v1/prompts/nope")).status_code == 404
    assert (await client.get("/v1/prompts/greet/labels/canary")).status_code == 404
    bad = await client.post("/v1/prompts", json={"name": "Bad Name", "template": {"text": "x"}})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("name: String should match")
    extra = await client.post("/v1/prompts", json={"name": "x", "template": {"text": "x"}, "author": "me"})
    assert extra.status_code == 400
    moved = await client.post("/v1/prompts/greet/labels/latest", json={"version": 1})
    assert moved.status_code == 400 and "cannot be moved" in moved.json()["error"]["message"]


@anyio
async def test_users_may_neither_read_nor_change_prompts(
    user_client: httpx.AsyncClient, container: Container
) -> None:
    # prompts hold the system prompts the output guard keeps from leaking: builders and admins only
    assert (await user_client.get("/v1/prompts")).status_code == 403
    r = await user_client.post("/v1/prompts", json={"name": "greet", "template": {"text": "x"}})
    assert r.status_code == 403 and "builder" in r.json()["error"]["message"]
    r = await user_client.post("/v1/prompts/rag.answer/labels/production", json={"version": 1})
    assert r.status_code == 403
    assert container.prompts.names() == ["evals.judge", "rag.answer"]


@anyio
async def test_a_builder_is_recorded_as_author(container: Container) -> None:
    async for client in _client(container, Principal("carol", "builder")):
        r = await client.post("/v1/prompts", json={"name": "greet", "template": {"text": "x"}})
        assert r.status_code == 201 and r.json()["author"] == "carol"


@anyio
async def test_answers_use_the_production_prompt_and_name_it(
    client: httpx.AsyncClient, container: Container
) -> None:
    assert not container.ingestor.ingest_paths([handbook_dir()]).failed
    r = await client.post("/v1/answers", json={"question": LEAVE})
    assert r.json()["prompt"] == "rag.answer@1"
    model = container.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    system = "You answer questions about a company's documents. Use only the numbered sources."
    assert model.calls[-1][0].content.startswith(system)  # the seeded text: behaviour unchanged

    v1 = (await client.get("/v1/prompts/rag.answer/versions/1")).json()["template"]
    v1["messages"][0]["content"] = "Answer from the sources, in one sentence."
    await client.post("/v1/prompts", json={"name": "rag.answer", "template": v1, "message": "shorter"})
    still = await client.post("/v1/answers", json={"question": LEAVE})
    assert still.json()["prompt"] == "rag.answer@1"  # a new version is not live until labelled
    await client.post("/v1/prompts/rag.answer/labels/production", json={"version": 2})
    r = await client.post("/v1/answers", json={"question": LEAVE})
    assert r.json()["prompt"] == "rag.answer@2"
    assert model.calls[-1][0].content == "Answer from the sources, in one sentence."
    chat = await client.post(
        "/v1/chat/completions",
        json={
            "model": "fake",
            "messages": [{"role": "user", "content": LEAVE}],
            "rag": {"collection": "default"},
        },
    )
    assert chat.json()["groundwork"]["prompt"] == "rag.answer@2"


SUITE = {
    "name": "api",
    "target": {"kind": "rag", "collection": "default"},
    "thresholds": {"pass_rate": 1.0},
    "cases": [
        {
            "id": "annual-leave",
            "question": LEAVE,
            "gold_documents": ["leave-policy.md"],
            "assert": [{"type": "citation"}, {"type": "contains", "value": "27"}],
        },
        {"id": "world-cup", "question": "Who won the 2018 FIFA World Cup?", "assert": [{"type": "refusal"}]},
    ],
}


@anyio
async def test_eval_runs_over_http_run_as_the_caller(client: httpx.AsyncClient, container: Container) -> None:
    assert not container.ingestor.ingest_paths([handbook_dir()], groups=["hr"]).failed
    r = await client.post("/v1/evals/runs", json={"suite": SUITE})
    assert r.status_code == 200, r.text
    run = r.json()["run"]
    assert run["passed"] and run["cases"][0]["prompt"] == "rag.answer@1"
    assert run["metrics"]["context_recall"] == 1.0

    async for eng in _client(container, Principal("erin", "builder", ("eng",))):
        r = await eng.post("/v1/evals/runs", json={"suite": SUITE})
        outsider = r.json()["run"]
        assert not outsider["passed"]  # erin may not read the HR handbook: nothing to cite
        assert outsider["cases"][0]["mode"] == "no_answer" and outsider["cases"][0]["cited"] == []

    compared = (await client.post("/v1/evals/runs", json={"suite": SUITE, "compare": ["1", "latest"]})).json()
    assert compared["comparison"]["verdict"] == "no_difference"
    assert compared["b"]["target"].startswith("rag rag.answer@1")


@anyio
async def test_eval_runs_refuse_what_they_must(
    client: httpx.AsyncClient, user_client: httpx.AsyncClient
) -> None:
    assert (await user_client.post("/v1/evals/runs", json={"suite": SUITE})).status_code == 403
    ingest = {**SUITE, "target": {**SUITE["target"], "ingest": ["/etc"]}}
    r = await client.post("/v1/evals/runs", json={"suite": ingest})
    assert r.status_code == 400 and "may only ingest samples:handbook" in r.json()["error"]["message"]
    r = await client.post("/v1/evals/runs", json={"suite": "../../etc/passwd"})
    assert r.status_code == 404 and "shipped suites: handbook" in r.json()["error"]["message"]
    r = await client.post("/v1/evals/runs", json={"suite": {"name": "x", "cases": []}})
    assert r.status_code == 400 and "cases" in r.json()["error"]["message"]
