"""The OpenAI-compatible provider against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.errors import (
    AuthError,
    ConfigError,
    ContentPolicyError,
    ContextWindowError,
    ModelTimeoutError,
    RateLimitError,
    UpstreamError,
)
from groundwork.models.openai_compat import OpenAICompatibleChatModel
from groundwork.types import GenerationOptions, Message, Usage

ANSWER = "Full-time employees receive 27 days of annual leave per calendar year."


class _Upstream(BaseHTTPRequestHandler):
    """Behaviour chosen by the model name in the request body."""

    requests: ClassVar[list[dict[str, object]]] = []

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append({"body": body, "auth": self.headers.get("authorization")})
        if self.path.endswith("/embeddings"):
            vectors = [[float(len(t)), float(t.count("e")), 1, 2, 3, 4, 5, 6] for t in body["input"]]
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
            data.reverse()  # servers may answer out of order: the index decides
            self._error(200, {"object": "list", "data": data, "model": body["model"]})
            return
        model = body["model"]
        if model == "ok" and not body["stream"]:
            self._json(ANSWER, len(ANSWER.split(" ")))
        elif model == "ok":
            self._sse(ANSWER.split(" "))
        elif model == "rate-limited":
            self._error(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})
        elif model == "broken":
            self._error(500, {"error": {"message": "internal"}})
        elif model == "auth":
            self._error(401, {"error": {"message": "bad key"}})
        elif model == "filtered":
            self._error(400, {"error": {"message": "blocked", "code": "content_filter"}})
        elif model == "too-long":
            self._error(400, {"error": {"message": "This model's maximum context length is 4096 tokens"}})
        elif model == "slow":
            threading.Event().wait(2)
            self._sse(["late"])

    def _error(self, status: int, payload: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, text: str, completion_tokens: int) -> None:
        body = {
            "id": "x",
            "object": "chat.completion",
            "model": "ok",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": completion_tokens},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, words: list[str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i, w in enumerate(words):
            event = {"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": len(words)}}
        self.wfile.write(
            f"data: {json.dumps(final)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()
        )


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hung up on the slow endpoint on purpose: nothing to report


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _run(model: OpenAICompatibleChatModel, max_tokens: int = 50):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await model.generate([Message("user", "hi")], GenerationOptions(max_tokens=max_tokens))
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_streams_text_and_usage(upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-test-123")
    model = OpenAICompatibleChatModel("ok", upstream, api_key_env="UPSTREAM_KEY")

    async def collect() -> tuple[str, object]:
        text, usage = "", None
        async for chunk in model.stream([Message("user", "hi")], GenerationOptions(max_tokens=50)):
            text += chunk.delta
            usage = chunk.usage or usage
        return text, usage

    streamed, usage = asyncio.run(collect())
    assert streamed == ANSWER and usage == Usage(11, len(ANSWER.split()))
    assert _Upstream.requests[-1]["body"]["stream"] is True  # type: ignore[index]
    completion = _run(OpenAICompatibleChatModel("ok", upstream, api_key_env="UPSTREAM_KEY"))
    assert completion.text == ANSWER
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == len(ANSWER.split())
    last = _Upstream.requests[-1]
    assert last["auth"] == "Bearer sk-test-123"
    body = last["body"]
    assert isinstance(body, dict) and body["stream"] is False and body["max_tokens"] == 50


@pytest.mark.parametrize(
    ("model", "error", "retryable"),
    [
        ("rate-limited", RateLimitError, True),
        ("broken", UpstreamError, True),
        ("auth", AuthError, False),
        ("too-long", ContextWindowError, False),
        ("filtered", ContentPolicyError, False),
    ],
)
def test_http_errors_are_translated(
    upstream: str, model: str, error: type[Exception], retryable: bool
) -> None:
    with pytest.raises(error) as info:
        _run(OpenAICompatibleChatModel(model, upstream))
    exc = info.value
    assert getattr(exc, "retryable") is retryable  # noqa: B009
    assert exc.details["status_code"] in (429, 500, 401, 400)  # type: ignore[attr-defined]
    assert exc.http_status < 500 or exc.retryable  # type: ignore[attr-defined]
    if model == "rate-limited":
        assert exc.retry_after == 7.0  # type: ignore[attr-defined]


def test_timeout_and_unreachable(upstream: str) -> None:
    with pytest.raises(ModelTimeoutError):
        _run(OpenAICompatibleChatModel("slow", upstream, timeout_s=0.3))
    with pytest.raises(UpstreamError, match="unreachable"):
        _run(OpenAICompatibleChatModel("ok", "http://127.0.0.1:9/v1", timeout_s=2))


def test_missing_api_key_env_names_the_variable(upstream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_KEY"):
        _run(OpenAICompatibleChatModel("ok", upstream, api_key_env="NOT_SET_KEY"))


def test_a_remote_model_is_used_through_configuration_alone(
    upstream: str, tmp_path: Path, handbook: Path
) -> None:
    config = tmp_path / "groundwork.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "embeddings:\n  provider: fake\n"
        f"models:\n  default_group: remote\n  groups:\n    remote:\n"
        f"      - provider: openai\n        model: ok\n        base_url: {upstream}\n"
    )
    c = Container(Settings.load(config))
    c.ingestor.ingest_paths([handbook])
    answer = asyncio.run(c.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.mode == "generated" and answer.text == ANSWER + " [1]"
    assert Path(answer.citations[0].source).name == "leave-policy.md"
    c.close()


def test_remote_embeddings_sync_and_async(upstream: str) -> None:
    from groundwork.errors import UpstreamError as Upstream
    from groundwork.models.openai_embeddings import OpenAICompatibleEmbedder

    emb = OpenAICompatibleEmbedder("e", upstream, dimensions=8, batch_size=2)
    texts = ["one", "three", "seventeen"]
    vecs = emb.embed(texts)
    assert vecs.shape == (3, 8)
    assert all(abs(float((v * v).sum()) - 1.0) < 1e-5 for v in vecs)  # normalised here
    assert vecs[0][0] < vecs[2][0]  # the order of the inputs is kept
    assert (asyncio.run(emb.aembed(texts)) - vecs).max() < 1e-6
    with pytest.raises(Upstream, match="expected"):
        OpenAICompatibleEmbedder("e", upstream, dimensions=16).embed(["x"])


def test_remote_embedder_through_configuration(upstream: str, tmp_path: Path, handbook: Path) -> None:
    config = tmp_path / "groundwork.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"embeddings:\n  provider: openai\n  model: e\n  dimensions: 8\n  base_url: {upstream}\n"
    )
    c = Container(Settings.load(config))
    report = c.ingestor.ingest_bytes(b"# Note\n\nThe canteen opens at noon.\n", "note.md")
    assert report.added == ["note.md"] and len(c.vectors) == 1
    c.close()
