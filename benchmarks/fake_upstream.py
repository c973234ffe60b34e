"""A minimal, fast OpenAI-compatible upstream for gateway benchmarks (raw ASGI + orjson on uvicorn).

    .venv/bin/python benchmarks/fake_upstream.py --port 9100 [--host 127.0.0.1]

Routes:

* ``POST /v1/chat/completions``: without ``"stream": true`` a fixed, small ``chat.completion`` JSON with
  ``usage``; with it, server-sent events: a role chunk, a few content chunks, a finish chunk, a usage chunk
  (always sent: gateways that ask for ``stream_options.include_usage`` get it, the others ignore it), then
  ``data: [DONE]``. The ``model`` field echoes the request's model.
* ``GET /v1/models``: one model, ``bench``.
* ``GET /stats``: ``{"requests": N, "connections": M}``, the chat requests answered and the distinct client
  connections (address and port) they came on since the last ``POST /stats/reset``: a gateway that reuses
  its upstream connections shows few connections for many requests.
* anything else: 404.

It does no work beyond parsing the request body once, so it answers as fast as uvicorn can (uvloop and
httptools, one process, no access log): the benchmark's "direct" line measures this server alone.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ANSWER_PARTS = ("Hello", "! How", " can I", " help", " you today?")
"""The streamed content, in chunks; the non-streamed answer is their concatenation."""
USAGE = {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17}

_JSON_HEADERS = [(b"content-type", b"application/json")]
_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}
)
_clients: set[tuple[str, int]] = set()
_counts = {"requests": 0}

_NOT_FOUND = orjson.dumps({"error": {"message": "not found", "type": "invalid_request_error"}})


def completion(model: str) -> bytes:
    """A non-streamed ``chat.completion`` body."""
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(ANSWER_PARTS)},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
        }
    )


def stream_events(model: str) -> list[bytes]:
    """The SSE events of one streamed answer, each sent as its own HTTP chunk."""
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = model

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + orjson.dumps({**base, "choices": choices, **extra}) + b"\n\n"

    events = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    events += [
        event([{"index": 0, "delta": {"content": part}, "finish_reason": None}]) for part in ANSWER_PARTS
    ]
    events.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(event([], usage=USAGE))
    events.append(b"data: [DONE]\n\n")
    return events


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return body


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/v1/chat/completions" and method == "POST":
        try:
            request = orjson.loads(await _read_body(receive))
        except orjson.JSONDecodeError:
            await _send(send, 400, _JSON_HEADERS, b'{"error":{"message":"invalid JSON"}}')
            return
        model = str(request.get("model") or "bench")
        _counts["requests"] += 1
        client = scope.get("client")
        if client:
            _clients.add((str(client[0]), int(client[1])))
        if request.get("stream"):
            # Content-Length is unknown to clients in a real stream: send it chunked, like a real server.
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            for chunk in stream_events(model):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _send(send, 200, _JSON_HEADERS, completion(model))
    elif path == "/v1/models" and method == "GET":
        await _send(send, 200, _JSON_HEADERS, _MODELS)
    elif path == "/stats" and method == "GET":
        stats = {"requests": _counts["requests"], "connections": len(_clients)}
        await _send(send, 200, _JSON_HEADERS, orjson.dumps(stats))
    elif path == "/stats/reset" and method == "POST":
        await _read_body(receive)
        _counts["requests"] = 0
        _clients.clear()
        await _send(send, 200, _JSON_HEADERS, b"{}")
    else:
        await _read_body(receive)
        await _send(send, 404, _JSON_HEADERS, _NOT_FOUND)


def main() -> None:
    """Serve :func:`app` on ``--host``/``--port`` with uvloop and httptools."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
    )


if __name__ == "__main__":
    main()
