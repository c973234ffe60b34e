"""``POST /v1/chat/completions``: OpenAI-compatible, non-streamed JSON or SSE.

Streaming failures: when the model fails before its first chunk the client gets an ordinary HTTP error
(status by category); once chunks were sent, the stream ends with one ``data: {"error": {...}}`` event
carrying the error id, and no ``[DONE]``, so a client never mistakes a cut answer for a whole one.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from groundwork.api.errors import REQUEST_ID_KEY, error_payload, error_response, internal_error, logger
from groundwork.api.middleware import MODEL_TIME_KEY
from groundwork.api.routing import raw_router
from groundwork.api.schemas import ChatCompletionRequest, openapi_body, parse_body
from groundwork.api.state import ApiState
from groundwork.errors import GroundworkError, NotFoundError
from groundwork.models.base import ChatModel
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage

_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_DONE = b"data: [DONE]\n\n"


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def completion_body(completion: Completion, model: str) -> bytes:
    """A ``chat.completion`` object as JSON bytes."""
    return orjson.dumps(
        {
            "id": f"chatcmpl-{os.urandom(12).hex()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                }
            ],
            "usage": _usage(completion.usage),
        }
    )


class ChunkEncoder:
    """Encodes the SSE events of one stream; the constant part of each chunk is serialised once."""

    __slots__ = ("_delta", "_head")

    def __init__(self, model: str) -> None:
        self._head = (
            b'data: {"id":"chatcmpl-'
            + os.urandom(12).hex().encode()
            + b'","object":"chat.completion.chunk","created":'
            + str(int(time.time())).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b","
        )
        self._delta = self._head + b'"choices":[{"index":0,"delta":{"content":'

    def role(self) -> bytes:
        return (
            self._head
            + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            + (b'"finish_reason":null}]}\n\n')
        )

    def delta(self, text: str) -> bytes:
        return self._delta + orjson.dumps(text) + b'},"finish_reason":null}]}\n\n'

    def finish(self, reason: str) -> bytes:
        return (
            self._head
            + b'"choices":[{"index":0,"delta":{},"finish_reason":'
            + orjson.dumps(reason)
            + (b"}]}\n\n")
        )

    def usage(self, usage: Usage) -> bytes:
        return self._head + b'"choices":[],"usage":' + orjson.dumps(_usage(usage)) + b"}\n\n"


async def _aclose(stream: AsyncIterator[StreamChunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _events(
    encoder: ChunkEncoder,
    first: StreamChunk | None,
    stream: AsyncIterator[StreamChunk],
    include_usage: bool,
    request_id: str,
) -> AsyncIterator[bytes]:
    usage: Usage | None = None
    finish = "stop"
    try:
        yield encoder.role()
        chunk = first
        while chunk is not None:
            if chunk.delta:
                yield encoder.delta(chunk.delta)
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            chunk = await anext(stream, None)
    except Exception as exc:
        error = exc if isinstance(exc, GroundworkError) else internal_error(exc, request_id)
        logger.warning("request %s: stream interrupted: %s", request_id, error)
        yield b"data: " + error_payload(error) + b"\n\n"
        return
    finally:
        await _aclose(stream)
    yield encoder.finish(finish)
    if include_usage:
        yield encoder.usage(usage or Usage())
    yield _DONE


async def _stream(
    request: Request,
    model: ChatModel,
    body: ChatCompletionRequest,
    messages: list[Message],
    options: GenerationOptions,
) -> Response:
    stream = aiter(model.stream(messages, options))
    started = time.perf_counter()
    try:
        first = await anext(stream, None)  # a failure here is still an ordinary HTTP error
    except BaseException:
        await _aclose(stream)
        raise
    finally:
        request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
    events = _events(
        ChunkEncoder(body.model), first, stream, body.include_usage, request.scope.get(REQUEST_ID_KEY, "")
    )
    return StreamingResponse(events, media_type="text/event-stream", headers=_SSE_HEADERS)


def chat_router(state: ApiState) -> APIRouter:
    """The chat completions route over ``state``'s models."""
    router = raw_router(tags=["openai"])

    @router.post("/v1/chat/completions", openapi_extra=openapi_body(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        """Create a chat completion (OpenAI-compatible; ``stream: true`` for server-sent events)."""
        body = parse_body(ChatCompletionRequest, await request.body())
        try:
            model = state.chat_model(body.model)
        except NotFoundError as exc:
            rid = request.scope.get(REQUEST_ID_KEY, "")
            return error_response(exc, code="model_not_found", param="model", request_id=rid)
        messages = body.chat_messages()
        options = body.options()
        if body.stream:
            return await _stream(request, model, body, messages, options)
        started = time.perf_counter()
        try:
            completion = await model.generate(messages, options)
        finally:
            request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
        return Response(completion_body(completion, body.model), media_type="application/json")

    return router
