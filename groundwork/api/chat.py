"""``POST /v1/chat/completions``: OpenAI-compatible, non-streamed JSON or SSE.

Streaming failures: when the model fails before its first chunk the client gets an ordinary HTTP error
(status by category); once chunks were sent, the stream ends with one ``data: {"error": {...}}`` event
carrying the error id, and no ``[DONE]``, so a client never mistakes a cut answer for a whole one.

Grounded chat: with the extra body field ``"rag": {"collection": "default", "top_k": 4}`` the last
user message is answered from the collection (:meth:`~groundwork.rag.answer.Answerer.ask` on the
requested model group; earlier messages and the generation options are not used) and the completion's
content is the verified answer. The response carries two extra top-level fields, ``"citations"`` (as in
``POST /v1/answers``) and ``"groundwork": {"mode", "trace_id", "collection"}``, and the trace id in the
``x-trace-id`` header. Streamed, the verified answer's text comes as ``chat.completion.chunk`` deltas
and those two fields ride on the last chunk before ``[DONE]``. OpenAI clients keep extra fields
(``completion.model_extra["citations"]`` in the ``openai`` package).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Mapping

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from groundwork.api.context import principal_of
from groundwork.api.errors import REQUEST_ID_KEY, error_payload, error_response, internal_error, logger
from groundwork.api.middleware import MODEL_TIME_KEY
from groundwork.api.observability import remember_exchange
from groundwork.api.rag import (
    TRACE_HEADER,
    answerer_for,
    citations_json,
    new_trace_id,
    parse_rag_options,
    rag_question,
)
from groundwork.api.routing import raw_router
from groundwork.api.schemas import ChatCompletionRequest, RagOptions, openapi_body, parse_body
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


def completion_body(completion: Completion, model: str, extra: Mapping[str, object] | None = None) -> bytes:
    """A ``chat.completion`` object as JSON bytes (with ``extra`` top-level fields)."""
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
            **(extra or {}),
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


def _with_fields(event: bytes, fields: Mapping[str, object]) -> bytes:
    """A chunk event of :class:`ChunkEncoder` (``data: {...}\\n\\n``) with more top-level fields."""
    return event[: -len(b"}\n\n")] + b"," + orjson.dumps(fields)[1:] + b"\n\n"


async def _rag_events(
    encoder: ChunkEncoder, text: str, extra: Mapping[str, object], usage: Usage | None
) -> AsyncIterator[bytes]:
    yield encoder.role()
    for piece in re.findall(r"\s*\S+", text):
        yield encoder.delta(piece)
    last = encoder.finish("stop")
    if usage is not None:
        yield last
        last = encoder.usage(usage)
    yield _with_fields(last, extra)
    yield _DONE


async def _rag_completion(
    request: Request, state: ApiState, body: ChatCompletionRequest, rag: RagOptions
) -> Response:
    """A chat completion whose content is the grounded answer to the last user message."""
    question = rag_question(body.chat_messages())
    answerer = await answerer_for(state, body.model)
    trace_id = new_trace_id()
    started = time.perf_counter()
    try:
        answer = await answerer.ask(
            question,
            rag.collection,
            principal_of(request),
            top_k=rag.top_k,
            filters=rag.filters.to_filters() if rag.filters else None,
        )
    finally:
        request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
    remember_exchange(request, trace_id, answer, rag.collection)
    extra = {
        "citations": citations_json(answer),
        "groundwork": {
            "mode": answer.mode,
            "trace_id": trace_id,
            "collection": rag.collection,
            "prompt": answer.prompt,
        },
    }
    if body.stream:
        usage = answer.usage if body.include_usage else None
        events = _rag_events(ChunkEncoder(body.model), answer.text, extra, usage)
        headers = {**_SSE_HEADERS, TRACE_HEADER: trace_id}
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    completion = Completion(answer.text, answer.model, answer.usage)
    content = completion_body(completion, body.model, extra)
    return Response(content, media_type="application/json", headers={TRACE_HEADER: trace_id})


def chat_router(state: ApiState) -> APIRouter:
    """The chat completions route over ``state``'s models."""
    router = raw_router(tags=["openai"])

    @router.post("/v1/chat/completions", openapi_extra=openapi_body(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        """Create a chat completion (OpenAI-compatible; ``stream: true`` for server-sent events).

        With the extra field ``"rag": {"collection", "top_k"}`` the last user message is answered from
        the collection, and the response adds ``citations`` and ``groundwork`` (see the module docs).
        """
        body = parse_body(ChatCompletionRequest, await request.body())
        rag = parse_rag_options(body.model_extra)
        try:
            model = state.chat_model(body.model)
        except NotFoundError as exc:
            rid = request.scope.get(REQUEST_ID_KEY, "")
            return error_response(exc, code="model_not_found", param="model", request_id=rid)
        if rag is not None:
            return await _rag_completion(request, state, body, rag)
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
