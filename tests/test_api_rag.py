"""The RAG HTTP API: answers, retrieval, collections and ``rag`` chat completions, on the fake models."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from fastapi import FastAPI

from groundwork.api import create_app, rag_documents
from groundwork.container import Container
from groundwork.errors import UpstreamError
from groundwork.models.base import ChatModel
from groundwork.models.fake import FakeChatModel
from groundwork.rag.answer import NO_ANSWER
from groundwork.rag.ingest import document_id
from groundwork.samples import broken_dir, handbook_dir
from groundwork.types import GenerationOptions, Message, StreamChunk, Usage
from tests.conftest import fake_settings
from tests.servers import serve

LEAVE = "How many days of annual leave do full-time staff get?"
LEAVE_ANSWER = "Full-time employees receive 27 days of annual leave per calendar year."
LEAVE_FIRST = LEAVE_ANSWER[:-1] + ", in addition to public holidays."
"""What the fake model answers: the first sentence of source [1]."""
UPLOADS = ("leave-policy.md", "benefits-health-and-pension.pdf", "whistleblowing.docx")

anyio = pytest.mark.anyio


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = Container(fake_settings(tmp_path / "data", router={"num_retries": 0}))
    yield c
    c.close()


@pytest.fixture
def loaded(container: Container) -> Container:
    """The container with the sample handbook in the ``default`` collection."""
    report = container.ingestor.ingest_paths([handbook_dir()])
    assert not report.failed
    return container


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_app(container)):
        yield c


def fake(container: Container) -> FakeChatModel:
    model = container.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    return model


def sse(text: str) -> list[tuple[str, Any]]:
    """``(event, data)`` of each server-sent event; ``event`` is ``""`` for unnamed ones."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = fields["data"]
        out.append((fields.get("event", ""), data if data == "[DONE]" else orjson.loads(data)))
    return out


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert {"message", "type", "code", "id", "severity", "retryable"} <= set(error)
    assert error["id"].startswith("err_")
    return error


def files(*names: str, folder: Path | None = None) -> list[tuple[str, tuple[str, bytes]]]:
    base = folder or handbook_dir()
    return [("file", (name, (base / name).read_bytes())) for name in names]


# -- POST /v1/answers ---------------------------------------------------------------------------------


@anyio
async def test_answer(client: httpx.AsyncClient, loaded: Container) -> None:
    r = await client.post("/v1/answers", json={"question": LEAVE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == LEAVE_FIRST + " [1]" and body["mode"] == "generated"
    assert body["trace_id"] == r.headers["x-trace-id"] and len(body["trace_id"]) == 32
    assert body["model"] == "fake" and body["usage"]["completion_tokens"] > 0
    assert body["timings"]["total"] > 0
    (cite,) = body["citations"]
    assert Path(cite["source"]).name == "leave-policy.md" and cite["heading_path"][-1] == "Annual Leave"
    assert cite["document_id"] == document_id("default", cite["source"]) and cite["number"] == 1
    assert "27 days" in cite["quote"] and cite["end"] > cite["start"]


@anyio
async def test_streamed_answer_has_tokens_then_the_same_verified_answer(
    client: httpx.AsyncClient, loaded: Container
) -> None:
    draft = LEAVE_ANSWER + " Also you get a pony."  # verification drops the second sentence
    fake(loaded).enqueue(draft, draft)
    plain = (await client.post("/v1/answers", json={"question": LEAVE, "top_k": 3})).json()
    assert plain["answer"] == LEAVE_ANSWER + " [1]" and plain["citations"]
    r = await client.post("/v1/answers", json={"question": LEAVE, "top_k": 3, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    names = [name for name, _ in events]
    assert names == ["token"] * (len(events) - 2) + ["answer", ""] and len(events) > 3
    assert events[-1][1] == "[DONE]"
    tokens = "".join(data["delta"] for name, data in events if name == "token")
    assert tokens == draft
    answer = events[-2][1]
    assert answer["draft"] == tokens
    assert answer["answer"] == plain["answer"] and answer["citations"] == plain["citations"]
    assert answer["trace_id"] == r.headers["x-trace-id"] != plain["trace_id"]


@anyio
async def test_streamed_answer_without_evidence_is_just_the_answer(
    client: httpx.AsyncClient, loaded: Container
) -> None:
    r = await client.post(
        "/v1/answers", json={"question": "Who won the 2018 FIFA World Cup?", "stream": True}
    )
    events = sse(r.text)
    assert [name for name, _ in events] == ["answer", ""]
    assert events[0][1]["answer"] == NO_ANSWER and events[0][1]["mode"] == "no_answer"


@anyio
async def test_unknown_collection_has_no_answer(client: httpx.AsyncClient, loaded: Container) -> None:
    r = await client.post("/v1/answers", json={"question": LEAVE, "collection": "nothing-here"})
    assert r.status_code == 200 and r.json()["mode"] == "no_answer" and r.json()["citations"] == []


@anyio
@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"question": ""}, "question"),
        ({"question": "   "}, "question"),
        ({"question": "x" * 4001}, "question"),
        ({}, "question"),
        ({"question": "hi", "collection": "../etc"}, "collection"),
        ({"question": "hi", "collection": "x" * 65}, "collection"),
        ({"question": "hi", "top_k": 0}, "top_k"),
        ({"question": "hi", "filters": {"tag": ["a"]}}, "filters.tag"),
        ({"question": "hi", "filters": {"modified_after": "yesterday"}}, "filters.modified_after"),
        ({"question": "hi", "colection": "typo"}, "colection"),
    ],
)
async def test_invalid_answer_requests_are_400_naming_the_field(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str
) -> None:
    error = error_of(await client.post("/v1/answers", json=payload), 400)
    assert error["param"] == param and error["message"].startswith(param + ":")


@anyio
async def test_a_4000_character_question_is_accepted(client: httpx.AsyncClient, loaded: Container) -> None:
    r = await client.post("/v1/answers", json={"question": "leave " * 666 + "abcd"})
    assert r.status_code == 200, r.text


class _FailsMidway(ChatModel):
    name = "midway"

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk("Full-time")
        raise UpstreamError("the upstream connection was reset")


class _FailsAtOnce(ChatModel):
    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        raise UpstreamError("the upstream is down")
        yield StreamChunk("")  # pragma: no cover - makes this an async generator


@anyio
async def test_failure_after_tokens_ends_the_stream_with_an_error_event(tmp_path: Path) -> None:
    c = Container(fake_settings(tmp_path / "data"), chat_model=_FailsMidway())
    c.ingestor.ingest_paths([handbook_dir() / "leave-policy.md"])
    async for client in _client(create_app(c)):
        r = await client.post("/v1/answers", json={"question": LEAVE, "stream": True})
        events = sse(r.text)
        assert events[0] == ("token", {"delta": "Full-time"})
        name, data = events[-1]
        assert name == "error" and data["error"]["id"].startswith("err_")
        assert data["error"]["code"] == "upstream" and "[DONE]" not in r.text
    c.close()


@anyio
async def test_failure_before_any_token_is_an_http_error(tmp_path: Path) -> None:
    c = Container(fake_settings(tmp_path / "data"), chat_model=_FailsAtOnce())
    c.ingestor.ingest_paths([handbook_dir() / "leave-policy.md"])
    async for client in _client(create_app(c)):
        for stream in (True, False):
            r = await client.post("/v1/answers", json={"question": LEAVE, "stream": stream})
            assert error_of(r, 503)["message"] == "the upstream is down"
    c.close()


# -- POST /v1/retrieve ---------------------------------------------------------------------------------


@anyio
async def test_filters_apply_over_http(client: httpx.AsyncClient, loaded: Container) -> None:
    prefix = str(handbook_dir() / "remote-work.md")
    r = await client.post(
        "/v1/retrieve", json={"query": LEAVE, "top_k": 3, "filters": {"path_prefix": prefix}}
    )
    assert r.status_code == 200, r.text
    assert {c["source"] for c in r.json()["chunks"]} == {prefix}
    r = await client.post("/v1/answers", json={"question": LEAVE, "filters": {"tags": ["none-has-it"]}})
    assert r.status_code == 200 and r.json()["mode"] == "no_answer" and r.json()["citations"] == []


@anyio
async def test_retrieve(client: httpx.AsyncClient, loaded: Container) -> None:
    r = await client.post("/v1/retrieve", json={"query": LEAVE, "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    chunks = body["chunks"]
    assert len(chunks) == 3 and body["collection"] == "default"
    assert set(chunks[0]) == {
        "chunk_id",
        "document_id",
        "source",
        "title",
        "heading_path",
        "start",
        "end",
        "text",
        "score",
        "vector_score",
        "keyword_score",
    }
    assert Path(chunks[0]["source"]).name == "leave-policy.md" and "27 days" in chunks[0]["text"]
    assert [c["score"] for c in chunks] == sorted((c["score"] for c in chunks), reverse=True)
    assert chunks[0]["vector_score"] > 0.3 and chunks[0]["keyword_score"] > 0
    assert {"embed_query", "vector_search", "keyword_search", "total"} <= set(body["timings"])
    assert error_of(await client.post("/v1/retrieve", json={"query": ""}), 400)["param"] == "query"


# -- collections ----------------------------------------------------------------------------------------


@anyio
async def test_multipart_upload_of_md_pdf_docx(client: httpx.AsyncClient, container: Container) -> None:
    r = await client.post(
        "/v1/collections/hr/documents", files=files(*UPLOADS), data={"groups": "hr, staff,"}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["added"] == 3 and body["failed"] == 0 and body["collection"] == "hr"
    assert [(d["name"], d["status"]) for d in body["documents"]] == [(n, "added") for n in UPLOADS]
    assert all(
        d["document_id"] == document_id("hr", d["name"]) and d["chunks"] > 0 for d in body["documents"]
    )

    listed = (await client.get("/v1/collections/hr/documents")).json()["documents"]
    assert sorted(d["source"] for d in listed) == sorted(UPLOADS)
    assert {d["media_type"] for d in listed} == {
        "text/markdown",
        "application/pdf",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
    assert all(d["groups"] == ["hr", "staff"] and d["chunk_count"] > 0 for d in listed)
    assert all(d["title"] and d["ingested_at"] > 0 for d in listed)

    again = await client.post(
        "/v1/collections/hr/documents", files=files(*UPLOADS), data={"groups": "staff,hr"}
    )
    assert again.status_code == 200 and again.json()["unchanged"] == 3
    collections = (await client.get("/v1/collections")).json()
    assert collections == {"collections": [{"name": "hr", "documents": 3}]}

    r = await client.post("/v1/retrieve", json={"query": LEAVE, "collection": "hr", "top_k": 1})
    assert r.json()["chunks"][0]["source"] == "leave-policy.md"


@anyio
async def test_json_upload_and_update(client: httpx.AsyncClient) -> None:
    doc = {"name": "notes", "text": "The parking garage opens at 07:15 on weekdays.", "groups": ["ops"]}
    r = await client.post("/v1/collections/ops.notes/documents", json={"documents": [doc]})
    assert r.status_code == 201, r.text
    (entry,) = r.json()["documents"]
    assert entry["name"] == "notes.txt" and entry["status"] == "added"
    assert entry["document_id"] == document_id("ops.notes", "notes.txt")
    query = {"query": "when does the parking garage open", "collection": "ops.notes"}
    chunk = (await client.post("/v1/retrieve", json=query)).json()["chunks"][0]
    assert "07:15" in chunk["text"] and chunk["document_id"] == entry["document_id"]

    changed = {**doc, "name": "notes.txt", "text": "The parking garage opens at 06:45 on weekdays."}
    r = await client.post("/v1/collections/ops.notes/documents", json={"documents": [changed]})
    assert r.status_code == 200 and r.json()["documents"][0]["status"] == "updated"
    chunk = (await client.post("/v1/retrieve", json=query)).json()["chunks"][0]
    assert "06:45" in chunk["text"]
    listed = (await client.get("/v1/collections/ops.notes/documents")).json()["documents"]
    assert [(d["source"], d["groups"]) for d in listed] == [("notes.txt", ["ops"])]


@anyio
async def test_unsupported_and_corrupt_uploads_are_422_and_store_nothing(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/collections/hr/documents", files=files("corrupt.pdf", "notes.xyz", folder=broken_dir())
    )
    error = error_of(r, 422)
    assert "corrupt.pdf" in error["message"] and "notes.xyz" in error["message"] and error["param"] == "file"
    statuses = {d["name"]: (d["status"], d["reason"]) for d in r.json()["documents"]}
    assert statuses["notes.xyz"][0] == "failed" and "unsupported file type '.xyz'" in statuses["notes.xyz"][1]
    assert statuses["corrupt.pdf"][0] == "failed" and "corrupt.pdf" in statuses["corrupt.pdf"][1]
    assert (await client.get("/v1/collections/hr/documents")).json()["documents"] == []
    assert (await client.get("/v1/collections")).json() == {"collections": []}

    r = await client.post(
        "/v1/collections/hr/documents",
        files=files("leave-policy.md") + files("corrupt.pdf", folder=broken_dir()),
    )
    assert r.status_code == 201 and (r.json()["added"], r.json()["failed"]) == (1, 1)
    listed = (await client.get("/v1/collections/hr/documents")).json()["documents"]
    assert [d["source"] for d in listed] == ["leave-policy.md"]

    binary = {"documents": [{"name": "scan.pdf", "text": "not really a PDF"}]}
    r = await client.post("/v1/collections/hr/documents", json=binary)
    assert "a JSON document is text" in error_of(r, 422)["message"]


@anyio
async def test_upload_limits(
    client: httpx.AsyncClient, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rag_documents, "MAX_FILE_BYTES", 1000)
    r = await client.post("/v1/collections/hr/documents", files=files("leave-policy.md"))
    assert "larger than 1000 bytes" in error_of(r, 422)["message"]
    r = await client.post(
        "/v1/collections/hr/documents", json={"documents": [{"name": "a.md", "text": "x" * 1001}]}
    )
    assert "larger than 1000 bytes" in error_of(r, 422)["message"]
    async for small in _client(create_app(container, max_body_bytes=100, max_upload_bytes=4096)):
        r = await small.post("/v1/collections/hr/documents", files=files("whistleblowing.docx"))
        error_of(r, 413)  # 37 KB: over the upload limit
        r = await small.post("/v1/collections/hr/documents", files=files("leave-policy.md"))
        assert "larger than 1000 bytes" in error_of(r, 422)["message"]  # under it, though over 100 bytes
        error_of(await small.post("/v1/retrieve", json={"query": "x" * 200}), 413)  # other routes: 100 bytes


@anyio
async def test_malformed_uploads_are_4xx(client: httpx.AsyncClient) -> None:
    url = "/v1/collections/hr/documents"
    r = await client.post(url, files=[("groups", (None, b"hr"))])  # multipart without a file part
    assert error_of(r, 400)["param"] == "file"
    r = await client.post(url, files={"files": ("a.md", b"# A\n\ntext")})
    assert error_of(r, 400)["param"] == "files"
    r = await client.post(url, content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"})
    assert "multipart/form-data" in error_of(r, 415)["message"]
    assert error_of(await client.post(url, json={"documents": []}), 400)["param"] == "documents"
    assert error_of(await client.post(url, content=b"{nope"), 400)["message"].startswith("the request body")


@anyio
async def test_delete_removes_the_document_from_retrieval(client: httpx.AsyncClient) -> None:
    await client.post("/v1/collections/hr/documents", files=files("leave-policy.md", "remote-work.md"))
    doc_id = document_id("hr", "leave-policy.md")
    query = {"query": LEAVE, "collection": "hr", "top_k": 10}
    before = (await client.post("/v1/retrieve", json=query)).json()["chunks"]
    assert any(c["document_id"] == doc_id for c in before)

    assert error_of(await client.delete(f"/v1/collections/other/documents/{doc_id}"), 404)
    r = await client.delete(f"/v1/collections/hr/documents/{doc_id}")
    assert r.status_code == 200 and r.json() == {"id": doc_id, "collection": "hr", "deleted": True}

    after = (await client.post("/v1/retrieve", json=query)).json()["chunks"]
    assert after and not any(c["document_id"] == doc_id for c in after)
    answer = (await client.post("/v1/answers", json={"question": LEAVE, "collection": "hr"})).json()
    assert all(c["document_id"] != doc_id for c in answer["citations"])
    assert error_of(await client.delete(f"/v1/collections/hr/documents/{doc_id}"), 404)
    listed = (await client.get("/v1/collections/hr/documents")).json()["documents"]
    assert [d["source"] for d in listed] == ["remote-work.md"]


@anyio
@pytest.mark.parametrize("name", ["-x", "a b", "x" * 65, "caf\u00e9", ".hidden"])
async def test_bad_collection_names_are_400(client: httpx.AsyncClient, name: str) -> None:
    url = f"/v1/collections/{name}/documents"
    for r in (
        await client.get(url),
        await client.post(url, json={"documents": [{"name": "a.txt", "text": "hello"}]}),
        await client.delete(url + "/abc"),
        await client.post("/v1/retrieve", json={"query": "hi", "collection": name}),
    ):
        error = error_of(r, 400)
        assert error["param"] == "collection" and "collection name" in error["message"]


# -- POST /v1/chat/completions with "rag" ----------------------------------------------------------------


@anyio
async def test_chat_completion_with_rag(client: httpx.AsyncClient, loaded: Container) -> None:
    answer = (await client.post("/v1/answers", json={"question": LEAVE})).json()
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": LEAVE},
    ]
    payload = {"model": "fake", "messages": messages, "rag": {"collection": "default", "top_k": 4}}
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "fake"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": answer["answer"]}
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] > 0
    assert body["citations"] == answer["citations"]
    assert body["groundwork"] == {
        "mode": "generated",
        "trace_id": r.headers["x-trace-id"],
        "collection": "default",
        "prompt": "rag.answer@1",
    }


@anyio
@pytest.mark.parametrize("include_usage", [False, True])
async def test_streamed_chat_completion_with_rag(
    client: httpx.AsyncClient, loaded: Container, include_usage: bool
) -> None:
    answer = (await client.post("/v1/answers", json={"question": LEAVE})).json()
    payload = {
        "model": "fake",
        "messages": [{"role": "user", "content": LEAVE}],
        "rag": {},
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    r = await client.post("/v1/chat/completions", json=payload)
    events = [data for _, data in sse(r.text)]
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == answer["answer"]
    last = chunks[-1]
    assert last["citations"] == answer["citations"] and last["groundwork"]["mode"] == "generated"
    assert all("citations" not in c for c in chunks[:-1])
    assert ("usage" in last) is include_usage


@anyio
async def test_invalid_rag_chat_requests(client: httpx.AsyncClient, loaded: Container) -> None:
    url = "/v1/chat/completions"
    user = [{"role": "user", "content": LEAVE}]
    r = await client.post(url, json={"model": "fake", "messages": user, "rag": {"top_k": 0}})
    assert error_of(r, 400)["param"] == "rag.top_k"
    r = await client.post(url, json={"model": "fake", "messages": user, "rag": {"collection": "a/b"}})
    assert error_of(r, 400)["param"] == "rag.collection"
    r = await client.post(url, json={"model": "fake", "messages": user, "rag": "default"})
    assert error_of(r, 400)["param"] == "rag"
    system = [{"role": "system", "content": "no question here"}]
    r = await client.post(url, json={"model": "fake", "messages": system, "rag": {}})
    assert error_of(r, 400)["param"] == "messages"
    r = await client.post(url, json={"model": "nope", "messages": user, "rag": {}})
    assert error_of(r, 404)["code"] == "model_not_found"
    # "rag": null is an ordinary chat completion
    r = await client.post(url, json={"model": "fake", "messages": user, "rag": None})
    assert r.json()["choices"][0]["message"]["content"] == LEAVE and "citations" not in r.json()


@anyio
async def test_openapi_documents_the_rag_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"AnswerRequest", "RetrieveRequest", "DocumentsUpload", "RagOptions"} <= set(
        schema["components"]["schemas"]
    )
    upload = schema["paths"]["/v1/collections/{collection}/documents"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(upload)
    assert "/v1/answers" in schema["paths"] and "/v1/retrieve" in schema["paths"]
    delete = schema["paths"]["/v1/collections/{collection}/documents/{doc_id}"]["delete"]
    assert [p["name"] for p in delete["parameters"]] == ["collection", "doc_id"]


# -- under uvicorn: the openai SDK, and tokens streamed as they are generated -----------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    c = Container(fake_settings(tmp_path_factory.mktemp("rag-sdk") / "data"))
    assert not c.ingestor.ingest_paths([handbook_dir()]).failed
    with serve(c) as url:
        yield url
    c.close()


def test_openai_sdk_reads_citations(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway + "/v1", api_key="x", max_retries=0)
    answer = httpx.post(gateway + "/v1/answers", json={"question": LEAVE}).json()
    extra = {"rag": {"collection": "default", "top_k": 4}}
    resp = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": LEAVE}], extra_body=extra
    )
    assert resp.choices[0].message.content == answer["answer"]
    assert resp.model_extra is not None and resp.model_extra["citations"] == answer["citations"]
    assert resp.model_extra["groundwork"]["mode"] == "generated"

    stream = client.chat.completions.create(
        model="fake", messages=[{"role": "user", "content": LEAVE}], extra_body=extra, stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer["answer"]
    assert chunks[-1].model_extra is not None and chunks[-1].model_extra["citations"] == answer["citations"]


class _Gated(ChatModel):
    """Sends its first token, then waits for the test to have received it before finishing."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.finished = False

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk("Full-time employees receive")
        await asyncio.to_thread(self.gate.wait, 10)
        self.finished = True
        yield StreamChunk(" 27 days of annual leave per calendar year.")
        yield StreamChunk("", usage=Usage(10, 9), finish_reason="stop")


def test_answer_tokens_are_streamed_as_they_are_generated(tmp_path: Path) -> None:
    model = _Gated()
    c = Container(fake_settings(tmp_path / "data"), chat_model=model)
    c.ingestor.ingest_paths([handbook_dir() / "leave-policy.md"])
    with (
        serve(c) as url,
        httpx.stream("POST", url + "/v1/answers", json={"question": LEAVE, "stream": True}, timeout=20) as r,
    ):
        lines = r.iter_lines()
        assert next(lines) == "event: token"
        assert orjson.loads(next(lines).removeprefix("data: ")) == {"delta": "Full-time employees receive"}
        assert not model.finished  # the first token arrived while the model was still generating
        model.gate.set()
        rest = "\n".join(lines)
    assert "event: answer" in rest and rest.rstrip().endswith("data: [DONE]")
    assert '"mode":"generated"' in rest
    c.close()
