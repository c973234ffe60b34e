"""The official ``openai`` package against the gateway under real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import openai
import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.errors import RateLimitError
from groundwork.models.base import ChatModel
from groundwork.models.fake import FakeChatModel
from tests.servers import BreaksMidway, serve

USER: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "hello there brave new world"}
]


@dataclass
class Gateway:
    url: str
    container: Container
    key: str  # an admin API key: the SDK sends it as `Authorization: Bearer`

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0)

    def fake(self, group: str) -> FakeChatModel:
        model = self.container.router.groups[group][0].model
        assert isinstance(model, FakeChatModel)
        return model


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake = [{"provider": "fake", "model": "fake"}]
    settings = Settings.load(
        None,
        data_dir=tmp_path_factory.mktemp("sdk") / "data",
        embeddings={"provider": "fake"},
        # "limited" is rate limited by one test; its cooldown must not touch the other tests' group.
        models={"default_group": "fake", "groups": {"fake": fake, "limited": fake}},
        router={"num_retries": 0},
    )
    container = Container(settings)
    configured = container.chat_model_for

    def chat_model_for(group: str | None = None) -> ChatModel:
        return BreaksMidway() if group == "midway" else configured(group)

    container.chat_model_for = chat_model_for  # type: ignore[method-assign]
    key, _ = container.security.keys.create("openai-sdk", "admin")
    with serve(container) as url:
        yield Gateway(url, container, key)
    container.close()


def test_chat_completion(gateway: Gateway) -> None:
    resp = gateway.client().chat.completions.create(model="fake", messages=USER, max_tokens=3, temperature=0)
    assert resp.id.startswith("chatcmpl-") and resp.object == "chat.completion" and resp.model == "fake"
    assert resp.choices[0].message.content == "hello there brave"
    assert resp.choices[0].message.role == "assistant" and resp.choices[0].finish_reason == "length"
    assert resp.usage is not None and resp.usage.completion_tokens == 3
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 3


def test_chat_completion_stream(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(
        model="fake", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello there brave new world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_stream_failure_after_tokens_raises_with_the_error_id(gateway: Gateway) -> None:
    stream = gateway.client().chat.completions.create(model="midway", messages=USER, stream=True)
    seen: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == "Hello world"
    body = info.value.body
    assert isinstance(body, dict) and body["id"].startswith("err_") and body["code"] == "upstream"


def test_embeddings_default_base64(gateway: Gateway) -> None:
    texts = ["annual leave policy", "expenses and travel"]
    raw = gateway.client().embeddings.with_raw_response.create(model="any", input=texts)
    assert isinstance(raw.http_response.json()["data"][0]["embedding"], str)  # the SDK asked for base64
    resp = raw.parse()
    got = np.array([d.embedding for d in resp.data], dtype=np.float32)
    assert np.array_equal(got, gateway.container.embedder.embed(texts))
    assert resp.usage.prompt_tokens > 0
    floats = gateway.client().embeddings.create(model="any", input="one", encoding_format="float")
    assert len(floats.data[0].embedding) == gateway.container.embedder.dimensions


def test_models_list(gateway: Gateway) -> None:
    models = gateway.client().models.list()
    assert sorted(m.id for m in models) == ["fake", "limited"]
    assert all(m.owned_by == "groundwork" for m in models)


def test_errors_raise_the_sdk_exception_classes(gateway: Gateway) -> None:
    client = gateway.client()
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-nope", messages=USER)
    assert not_found.value.code == "model_not_found" and not_found.value.param == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake", messages=[{"role": "robot", "content": "x"}])  # type: ignore[list-item,misc]
    assert "messages.0.role" in bad.value.message
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.chat.completions.create(model="fake", messages=USER, n=2)


def test_rate_limit_raises_rate_limit_error(gateway: Gateway) -> None:
    gateway.fake("limited").enqueue(RateLimitError("slow down", retry_after=1))
    with pytest.raises(openai.RateLimitError) as info:
        gateway.client().chat.completions.create(model="limited", messages=USER)
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.headers["x-request-id"]


def test_concurrent_requests_with_the_async_client(gateway: Gateway) -> None:
    async def go() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=gateway.key, max_retries=0)
        async with client:
            replies = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model="fake", messages=[{"role": "user", "content": f"number {i}"}]
                    )
                    for i in range(50)
                )
            )
        return [r.choices[0].message.content or "" for r in replies]

    assert asyncio.run(go()) == [f"number {i}" for i in range(50)]


def test_size_limit_and_headers_on_the_real_server(gateway: Gateway) -> None:
    def chunked() -> Iterator[bytes]:  # no Content-Length: the middleware counts
        for _ in range(5):
            yield b" " * (1024 * 1024)

    auth = {"authorization": f"Bearer {gateway.key}"}  # unauthenticated bodies are refused unread (401)
    with httpx.Client(base_url=gateway.url, headers=auth) as http:
        r = http.post("/v1/chat/completions", content=b" " * (4 * 1024 * 1024 + 1))
        assert r.status_code == 413 and r.json()["error"]["id"].startswith("err_")
        r = http.post("/v1/chat/completions", content=chunked())
        assert r.status_code == 413
        r = http.get("/healthz", headers={"x-request-id": "trace-42"})
        assert r.headers["x-request-id"] == "trace-42"
        assert float(r.headers["x-groundwork-overhead-ms"]) >= 0
        assert http.get("/readyz").json() == {"status": "ok"}
