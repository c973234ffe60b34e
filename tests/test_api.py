"""The HTTP API in process (``httpx.ASGITransport``), on the fake models."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI

from groundwork.api import create_app
from groundwork.container import Container
from groundwork.errors import RateLimitError, UpstreamError
from groundwork.models.base import ChatModel, Vectors
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.types import GenerationOptions, Message, StreamChunk
from tests.conftest import fake_settings
from tests.servers import BreaksMidway

pytestmark = pytest.mark.anyio

USER = [{"role": "user", "content": "hello there brave new world"}]


class _Slow(ChatModel):
    """Answers after a delay, to tell model time from gateway overhead."""

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        await asyncio.sleep(0.3)
        yield StreamChunk("late", finish_reason="stop")


class _Crashes(ChatModel):
    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        raise RuntimeError("a bug, not a GroundworkError")
        yield StreamChunk("")  # pragma: no cover - makes this an async generator


EXTRA_MODELS: dict[str, type[ChatModel]] = {"midway": BreaksMidway, "slow": _Slow, "crash": _Crashes}


@pytest.fixture
def container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    # No retries: a scripted failure reaches the client as it is (retries are the router's tests).
    c = Container(fake_settings(tmp_path / "data", router={"num_retries": 0}))
    configured = c.chat_model_for

    def chat_model_for(group: str | None = None) -> ChatModel:
        return EXTRA_MODELS[group]() if group in EXTRA_MODELS else configured(group)

    monkeypatch.setattr(c, "chat_model_for", chat_model_for)
    yield c
    c.close()


@pytest.fixture
def app(container: Container) -> FastAPI:
    return create_app(container)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        yield c


def fake(container: Container) -> FakeChatModel:
    """The scripted fake behind the router's "fake" group (the one a test enqueues on)."""
    model = container.router.groups["fake"][0].model
    assert isinstance(model, FakeChatModel)
    return model


def sse_events(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else orjson.loads(e) for e in events]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"message", "type", "code", "id", "severity", "retryable"} <= set(error)
    assert error["id"].startswith("err_")
    return error


async def test_chat_completion_shape(client: httpx.AsyncClient, container: Container) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "fake", "messages": USER})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["id"].startswith("chatcmpl-") and body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and body["model"] == "fake"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "hello there brave new world"}
    assert choice["finish_reason"] == "stop" and choice["index"] == 0
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert fake(container).calls[-1] == [Message("user", "hello there brave new world")]


async def test_options_and_tolerated_openai_fields(client: httpx.AsyncClient, container: Container) -> None:
    payload = {
        "model": "fake",
        "messages": [
            {"role": "system", "content": "be brief", "name": "ops"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "one two "}, {"type": "text", "text": "three"}],
            },
        ],
        "max_completion_tokens": 2,
        "temperature": 0.7,
        "stop": "END",
        "n": 1,
        "top_p": 0.9,
        "user": "u-1",
        "seed": 7,
        "presence_penalty": 0,
    }
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "one two"
    assert fake(container).calls[-1][1] == Message("user", "one two three")
    r = await client.post("/v1/chat/completions", json={**payload, "max_tokens": 1, "stop": ["a", "b"]})
    assert r.json()["choices"][0]["message"]["content"] == "one two"  # max_completion_tokens wins


async def test_stream_shape_with_usage(client: httpx.AsyncClient) -> None:
    payload = {"model": "fake", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fake" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "hello there brave new world"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 10


async def test_stream_without_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "fake", "messages": USER, "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_unknown_model_is_404_model_not_found(client: httpx.AsyncClient) -> None:
    for stream in (False, True):
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-nope", "messages": USER, "stream": stream}
        )
        assert r.status_code == 404
        error = error_of(r)
        assert error["code"] == "model_not_found" and error["param"] == "model"
        assert "gpt-nope" in error["message"] and "fake" in error["message"]


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        (
            {"model": "fake", "messages": [{"role": "robot", "content": "x"}]},
            "messages.0.role: Input should be",
        ),
        ({"model": "fake", "messages": [{"role": "user", "content": 5}]}, "messages.0.content: content must"),
        ({"model": "fake", "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({"model": "fake"}, "messages: Field required"),
        ({"messages": USER}, "model: Field required"),
        ({"model": "fake", "messages": []}, "messages: List should have at least 1 item"),
        ({"model": "fake", "messages": "hi"}, "messages: Input should be a valid array"),
        (
            {"model": "fake", "messages": USER, "max_tokens": "lots"},
            "max_tokens: Input should be a valid integer",
        ),
        ({"model": "fake", "messages": USER, "temperature": 9}, "temperature: Input should be less than"),
        ({"model": "fake", "messages": USER, "n": 2}, "n: only n=1 is supported"),
        ({"model": "fake", "messages": USER, "stop": 3}, "stop: stop must be a string or a list"),
        ({"model": "fake", "messages": USER, "stop": ["a", 1]}, "stop.1: Input should be a valid string"),
        ([1, 2], "body: Input should be an object"),
    ],
)
async def test_invalid_requests_are_400_naming_the_field(
    client: httpx.AsyncClient, payload: object, names: str
) -> None:
    r = await client.post("/v1/chat/completions", json=payload)
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["type"] == "invalid_request_error"
    assert names in error["message"]
    assert error["param"] == names.split(":")[0]


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    for content in (b"{not json", b"", b'{"model": "fake", "messages": ['):
        r = await client.post(
            "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert "not valid JSON" in error_of(r)["message"]


async def test_oversized_body_is_413(client: httpx.AsyncClient, container: Container) -> None:
    big = {"model": "fake", "messages": [{"role": "user", "content": "x" * (4 * 1024 * 1024)}]}
    r = await client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and "limit" in error_of(r)["message"]
    assert r.headers["x-request-id"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(8):
            yield b" " * 512

    small = create_app(container, max_body_bytes=1024)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://gw") as c:
        r = await c.post("/v1/chat/completions", content=chunks())
        assert r.status_code == 413, r.text
        ok = await c.post("/v1/chat/completions", json={"model": "fake", "messages": USER})
        assert ok.status_code == 200


async def test_error_before_first_token_is_an_http_error(
    client: httpx.AsyncClient, container: Container
) -> None:
    for stream in (False, True):
        exc = UpstreamError("upstream answered 502")
        fake(container).enqueue(exc)
        r = await client.post(
            "/v1/chat/completions", json={"model": "fake", "messages": USER, "stream": stream}
        )
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        error = error_of(r)
        assert error["id"] == exc.error_id and error["type"] == "UpstreamError"
        assert error["code"] == "upstream" and error["retryable"] is True


async def test_rate_limit_is_429_with_retry_after(client: httpx.AsyncClient, container: Container) -> None:
    fake(container).enqueue(RateLimitError("too many requests", retry_after=2.5))
    r = await client.post("/v1/chat/completions", json={"model": "fake", "messages": USER})
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert error_of(r)["code"] == "rate_limit"


async def test_failure_after_tokens_ends_the_stream_with_an_error_event(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "midway", "messages": USER, "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert "[DONE]" not in events
    deltas = [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert deltas == ["", "Hello", " world"]
    error = events[-1]["error"]
    assert error["id"].startswith("err_") and error["type"] == "UpstreamError"
    assert error["message"] == "the upstream connection was reset" and error["retryable"] is True


async def test_unexpected_exception_is_500_with_a_logged_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="groundwork.api"):
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "crash", "messages": USER},
            headers={"x-request-id": "req-9"},
        )
    assert r.status_code == 500 and r.headers["x-request-id"] == "req-9"
    error = error_of(r)
    assert "a bug" not in error["message"]  # internals stay in the log
    assert any(error["id"] in rec.getMessage() and "req-9" in rec.getMessage() for rec in caplog.records)


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"x-request-id": "abc-123.x"})
    assert r.headers["x-request-id"] == "abc-123.x"
    generated = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(generated) == 3 and all(len(g) >= 16 for g in generated)
    r = await client.get("/healthz", headers={"x-request-id": "not ok!" + "x" * 200})
    assert r.headers["x-request-id"] != "not ok!" + "x" * 200


async def test_overhead_header_excludes_model_time(client: httpx.AsyncClient) -> None:
    for path, payload in [
        ("/v1/chat/completions", {"model": "fake", "messages": USER}),
        ("/v1/embeddings", {"model": "e", "input": "hi"}),
    ]:
        r = await client.post(path, json=payload)
        assert float(r.headers["x-groundwork-overhead-ms"]) >= 0
    for stream in (False, True):
        r = await client.post(
            "/v1/chat/completions", json={"model": "slow", "messages": USER, "stream": stream}
        )
        assert r.status_code == 200
        assert float(r.headers["x-groundwork-overhead-ms"]) < 150  # the model slept 300 ms
    assert float((await client.get("/nope")).headers["x-groundwork-overhead-ms"]) >= 0


async def test_embeddings_float_and_base64(client: httpx.AsyncClient, container: Container) -> None:
    texts = ["annual leave policy", "expenses and travel"]
    expected = container.embedder.embed(texts)
    r = await client.post("/v1/embeddings", json={"model": "any", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == container.embedder.name
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    assert np.allclose(np.array([d["embedding"] for d in body["data"]]), expected, atol=1e-6)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0

    r = await client.post(
        "/v1/embeddings", json={"model": "any", "input": texts, "encoding_format": "base64"}
    )
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    assert np.array_equal(np.stack(decoded), expected)

    r = await client.post("/v1/embeddings", json={"model": "any", "input": "one text"})
    assert len(r.json()["data"]) == 1


class _AsyncEmbedder(FakeEmbedder):
    """An embedder with its own ``aembed`` (a remote one, say): the route must await it."""

    def __init__(self) -> None:
        super().__init__(16)
        self.async_calls = 0

    async def aembed(self, texts: Sequence[str]) -> Vectors:
        self.async_calls += 1
        return self.embed(texts)


async def test_an_embedders_own_aembed_is_used(tmp_path: Path) -> None:
    embedder = _AsyncEmbedder()
    c = Container(fake_settings(tmp_path / "data"), embedder=embedder)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(c)), base_url="http://gw"
    ) as cl:
        r = await cl.post("/v1/embeddings", json={"model": "any", "input": ["a b", "c"]})
    assert r.status_code == 200 and embedder.async_calls == 1
    assert len(r.json()["data"][1]["embedding"]) == 16
    c.close()


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({"input": []}, "input: give between 1 and 2048 texts"),
        ({"input": [1, 2]}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 3}, "dimensions=3 is not supported"),
        ({}, "input: Field required"),
    ],
)
async def test_invalid_embedding_requests_are_400(
    client: httpx.AsyncClient, payload: dict[str, Any], names: str
) -> None:
    r = await client.post("/v1/embeddings", json={"model": "any", **payload})
    assert r.status_code == 400, r.text
    assert names in error_of(r)["message"]


async def test_models_lists_the_groups(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [("fake", "model", "groundwork")]


async def test_health_and_readiness(client: httpx.AsyncClient, tmp_path: Path) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}

    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data dir should be")
    broken = Container(fake_settings(blocked))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(broken)), base_url="http://gw"
    ) as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable" and "document store" in r.json()["reasons"][0]


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "404"
    r = await client.get("/v1/chat/completions")
    assert r.status_code == 405 and error_of(r)["type"] == "invalid_request_error"


async def test_openapi_documents_the_request_bodies(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"ChatCompletionRequest", "EmbeddingRequest", "ChatMessage"} <= set(
        schema["components"]["schemas"]
    )
    body = schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
