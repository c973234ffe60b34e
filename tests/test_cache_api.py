"""The cache over HTTP: x-groundwork-cache, Cache-Control, scoping by principal, RAG invalidation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from groundwork.api import create_app
from groundwork.container import Container
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from tests.conftest import fake_settings

pytestmark = pytest.mark.anyio

HR = {"x-test-principal": "alice:user:hr"}
HR2 = {"x-test-principal": "carol:user:hr"}
ENG = {"x-test-principal": "bob:user:eng"}


def with_principals(app: ASGIApp, container: Container) -> ASGIApp:
    """Authenticates with real API keys: ``x-test-principal: name:role:g1,g2`` picks (and creates) the
    key of that principal; without the header the caller is the admin ``local``."""
    tokens: dict[str, str] = {}

    def token_for(spec: str) -> str:
        if spec not in tokens:
            name, role, groups = spec.split(":")
            grps = [g for g in groups.split(",") if g]
            tokens[spec] = container.security.keys.create(name, role, grps)[0]  # type: ignore[arg-type]
        return tokens[spec]

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = list(scope.get("headers", ()))
            spec = next((v.decode() for k, v in headers if k == b"x-test-principal"), "local:admin:")
            headers = [(k, v) for k, v in headers if k not in (b"x-test-principal", b"authorization")]
            headers.append((b"authorization", f"Bearer {token_for(spec)}".encode()))
            scope = {**scope, "headers": headers}
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(
        fake_settings(
            tmp_path / "data", cache={"enabled": True}, router={"num_retries": 0}, security={"auth": True}
        )
    )
    yield c
    c.close()


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = with_principals(create_app(container), container)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


def fake(container: Container) -> FakeChatModel:
    model = container.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    return model


def chat(question: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": question}], "stream": stream}


async def test_chat_miss_then_hit_header(client: httpx.AsyncClient, container: Container) -> None:
    fake(container).enqueue("first answer", "second answer")
    r1 = await client.post("/v1/chat/completions", json=chat("What is the leave policy?"))
    r2 = await client.post("/v1/chat/completions", json=chat("What is the leave policy?"))
    assert r1.headers["x-groundwork-cache"] == "miss" and r2.headers["x-groundwork-cache"] == "hit"
    assert r2.json()["choices"][0]["message"]["content"] == "first answer"
    assert len(fake(container).calls) == 1


async def test_cache_control_no_cache_and_no_store(client: httpx.AsyncClient, container: Container) -> None:
    fake(container).enqueue("one", "two", "three")
    q = chat("Where is the office?")
    r = await client.post("/v1/chat/completions", json=q, headers={"cache-control": "no-store"})
    assert "x-groundwork-cache" not in r.headers and r.json()["choices"][0]["message"]["content"] == "one"
    r = await client.post("/v1/chat/completions", json=q)
    assert r.headers["x-groundwork-cache"] == "miss"
    r = await client.post("/v1/chat/completions", json=q, headers={"cache-control": "no-cache"})
    assert (
        r.headers["x-groundwork-cache"] == "miss" and r.json()["choices"][0]["message"]["content"] == "three"
    )
    r = await client.post("/v1/chat/completions", json=q)
    assert (
        r.headers["x-groundwork-cache"] == "hit" and r.json()["choices"][0]["message"]["content"] == "three"
    )


async def test_principals_with_different_groups_never_share(
    client: httpx.AsyncClient, container: Container
) -> None:
    fake(container).enqueue("hr answer", "eng answer", "admin answer")
    q = chat("What is my bonus?")
    hr = await client.post("/v1/chat/completions", json=q, headers=HR)
    eng = await client.post("/v1/chat/completions", json=q, headers=ENG)
    admin = await client.post("/v1/chat/completions", json=q)
    assert [r.headers["x-groundwork-cache"] for r in (hr, eng, admin)] == ["miss", "miss", "miss"]
    hr2 = await client.post("/v1/chat/completions", json=q, headers=HR2)
    eng2 = await client.post("/v1/chat/completions", json=q, headers=ENG)
    assert hr2.headers["x-groundwork-cache"] == "hit"
    assert hr2.json()["choices"][0]["message"]["content"] == "hr answer"
    assert eng2.json()["choices"][0]["message"]["content"] == "eng answer"


async def test_stream_replayed_from_the_cache(client: httpx.AsyncClient, container: Container) -> None:
    fake(container).enqueue("alpha beta gamma")
    texts = []
    for _ in range(2):
        r = await client.post("/v1/chat/completions", json=chat("Stream me", stream=True))
        texts.append((r.headers["x-groundwork-cache"], r.text.count('"content":'), "alpha" in r.text))
        assert r.text.endswith("data: [DONE]\n\n")
    assert texts[0][0] == "miss" and texts[1][0] == "hit"
    assert texts[0][1:] == texts[1][1:]
    assert len(fake(container).calls) == 1


async def test_changed_collection_invalidates_cached_answers(
    client: httpx.AsyncClient, container: Container, tmp_path: Path
) -> None:
    doc = tmp_path / "leave.md"
    doc.write_text("# Leave\n\nEmployees get 25 days of paid leave a year.\n")
    container.ingestor.ingest_paths([doc])
    body = {"question": "How many days of paid leave do employees get?", "collection": "default"}
    r1 = await client.post("/v1/answers", json=body)
    r2 = await client.post("/v1/answers", json=body)
    assert (r1.headers["x-groundwork-cache"], r2.headers["x-groundwork-cache"]) == ("miss", "hit")
    assert r2.json()["answer"] == r1.json()["answer"] and "25 days" in r1.json()["answer"]
    assert r2.json()["trace_id"] != r1.json()["trace_id"]  # a hit is still its own request and trace

    assert container.query_embedder is container.retriever.embedder  # one LRU for cache and retrieval
    embedder = container.embedder
    assert isinstance(embedder, FakeEmbedder)
    before = embedder.texts_embedded
    r = await client.post("/v1/answers", json={**body, "question": "How much paid leave do employees get?"})
    # the question once (the answer cache and retrieval share it), and the grounded prompt (model cache)
    assert embedder.texts_embedded - before == 2, r.json()

    doc.write_text("# Leave\n\nEmployees get 30 days of paid leave a year.\n")
    container.ingestor.ingest_paths([doc])
    r3 = await client.post("/v1/answers", json=body)
    assert "30 days" in r3.json()["answer"]


async def test_answers_are_scoped_by_principal(
    client: httpx.AsyncClient, container: Container, tmp_path: Path
) -> None:
    doc = tmp_path / "pay.md"
    doc.write_text("# Pay\n\nThe HR salary review happens every March.\n")
    container.ingestor.ingest_paths([doc], groups=["hr"])
    body = {"question": "When does the salary review happen?", "collection": "default"}
    hr = await client.post("/v1/answers", json=body, headers=HR)
    eng = await client.post("/v1/answers", json=body, headers=ENG)
    assert "March" in hr.json()["answer"]
    assert eng.headers["x-groundwork-cache"] == "miss"
    assert "March" not in eng.json()["answer"] and eng.json()["mode"] == "no_answer"


async def test_a_new_production_prompt_is_not_answered_from_the_cache(
    client: httpx.AsyncClient, container: Container, tmp_path: Path
) -> None:
    import dataclasses

    from groundwork.prompts.builtin import RAG_ANSWER, RAG_ANSWER_TEMPLATE

    doc = tmp_path / "desk.md"
    doc.write_text("# Desks\n\nHot desks are booked in the office app one week ahead.\n")
    container.ingestor.ingest_paths([doc])
    body = {"question": "How far ahead are hot desks booked?", "collection": "default"}
    assert (await client.post("/v1/answers", json=body)).headers["x-groundwork-cache"] == "miss"
    assert (await client.post("/v1/answers", json=body)).headers["x-groundwork-cache"] == "hit"
    changed = dataclasses.replace(
        RAG_ANSWER_TEMPLATE, model=dataclasses.replace(RAG_ANSWER_TEMPLATE.model, max_tokens=7)
    )
    version = container.prompts.create(RAG_ANSWER, changed, message="shorter drafts")
    container.prompts.set_label(RAG_ANSWER, "production", version.version)
    again = await client.post("/v1/answers", json=body)
    assert again.headers["x-groundwork-cache"] == "miss"  # the key names the prompt version
    assert again.json()["prompt"] == f"{RAG_ANSWER}@{version.version}"
