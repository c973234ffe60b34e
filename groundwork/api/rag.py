"""Grounded answers and retrieval over HTTP: ``POST /v1/answers`` and ``POST /v1/retrieve``.

The collection routes (upload, list, delete) are in :mod:`groundwork.api.rag_documents`;
:func:`rag_router` serves both. Answers carry a ``trace_id`` (also in the ``x-trace-id`` header).

``POST /v1/answers`` with ``stream: true`` answers with server-sent events::

    event: token                      one per model token, as it is generated (the unverified draft)
    data: {"delta": "..."}

    event: answer                     once: the verified answer, citations included, as without stream
    data: {"answer": ..., "mode": ..., "citations": [...], "trace_id": ..., ...}

    data: [DONE]

A failure before the first event is an ordinary HTTP error; after it, the stream ends with one
``event: error`` whose data is the error body (with its id) and no ``[DONE]``. The tokens are the
model's draft: a client shows them while it waits and replaces them with the ``answer`` event's text,
which is what survived verification (see :mod:`groundwork.rag.answer`).

Every CPU-heavy step (embedding the query, verifying the draft) runs in a worker thread; the parts of
the container that open files are built in one too.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from groundwork.api.context import principal_of
from groundwork.api.errors import (
    REQUEST_ID_KEY,
    RequestValidationFailed,
    error_payload,
    internal_error,
    logger,
    validation_error,
)
from groundwork.api.middleware import MODEL_TIME_KEY
from groundwork.api.observability import remember_exchange
from groundwork.api.rag_documents import documents_router
from groundwork.api.routing import raw_router
from groundwork.api.schemas import (
    MAX_QUESTION_CHARS,
    AnswerRequest,
    RagOptions,
    RetrieveRequest,
    openapi_body,
    parse_body,
)
from groundwork.api.state import ApiState
from groundwork.errors import GroundworkError
from groundwork.observability.tracing import current_trace_id
from groundwork.rag.answer import Answer, Answerer
from groundwork.rag.retrieval import Retrieval
from groundwork.types import Message, ScoredChunk

TRACE_HEADER = "x-trace-id"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_DONE = b"data: [DONE]\n\n"


def new_trace_id() -> str:
    """The OpenTelemetry trace id of the running request (a uuid4 hex when nothing is traced)."""
    return current_trace_id() or uuid.uuid4().hex


def json_response(content: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``content`` serialised with orjson."""
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type="application/json")


def answer_json(answer: Answer, trace_id: str) -> dict[str, object]:
    """The body of an answer: :meth:`Answer.to_dict` and the trace id."""
    return {**answer.to_dict(), "trace_id": trace_id}


def citations_json(answer: Answer) -> object:
    """An answer's citations, in the shape of ``POST /v1/answers``."""
    return answer.to_dict()["citations"]


async def answerer_for(state: ApiState, group: str | None = None) -> Answerer:
    """The container's answerer, or a copy of it on the chat model of model group ``group``.

    Raises :class:`~groundwork.errors.NotFoundError` for a group that is not configured. Chat models
    are looked up on the event loop (like the chat route does); the store, the index and the embedder
    are opened in a worker thread the first time, since they read files.
    """
    container = state.container
    model = None if group is None else state.chat_model(group)
    container.chat_model  # noqa: B018 - the router, built on the loop rather than in the thread
    answerer = await asyncio.to_thread(lambda: container.answerer)
    if model is None or answerer.model is model:
        return answerer
    other = copy.copy(answerer)  # the same retriever and settings, another model group
    other.model = model
    return other


def parse_rag_options(extra: Mapping[str, Any] | None) -> RagOptions | None:
    """The ``rag`` extra field of a chat request (``None`` when absent); 400 naming ``rag.*`` if invalid."""
    raw = (extra or {}).get("rag")
    if raw is None:
        return None
    try:
        return RagOptions.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise validation_error([{**e, "loc": ("rag", *e["loc"])} for e in errors]) from None


def rag_question(messages: Sequence[Message]) -> str:
    """The question of a grounded chat request: its last user message."""
    question = next((m.content for m in reversed(messages) if m.role == "user"), "")
    if not question.strip():
        raise RequestValidationFailed(
            "messages: a `rag` request needs a user message (the question)", param="messages"
        )
    if len(question) > MAX_QUESTION_CHARS:
        raise RequestValidationFailed(
            f"messages: the question (the last user message) is longer than {MAX_QUESTION_CHARS} characters",
            param="messages",
        )
    return question


def _sse(event: bytes, payload: object) -> bytes:
    return b"event: " + event + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def _answer_events(
    first: str | None,
    tokens: asyncio.Queue[str | None],
    task: asyncio.Task[Answer],
    trace_id: str,
    request_id: str,
) -> AsyncIterator[bytes]:
    try:
        token = first
        while token is not None:
            yield _sse(b"token", {"delta": token})
            token = await tokens.get()
        answer = await task
    except Exception as exc:
        error = exc if isinstance(exc, GroundworkError) else internal_error(exc, request_id)
        logger.warning("request %s: answer stream interrupted: %s", request_id, error)
        yield b"event: error\ndata: " + error_payload(error) + b"\n\n"
        return
    finally:
        task.cancel()  # a no-op once it is done; stops the model when the client went away
    yield _sse(b"answer", answer_json(answer, trace_id))
    yield _DONE


async def _stream_answer(
    request: Request, answerer: Answerer, body: AnswerRequest, trace_id: str
) -> Response:
    # ``ask`` runs on this event loop and calls ``on_token`` from it, so ``put_nowait`` is safe.
    tokens: asyncio.Queue[str | None] = asyncio.Queue()

    async def run() -> Answer:
        try:
            answer = await answerer.ask(
                body.question,
                body.collection,
                principal_of(request),
                on_token=tokens.put_nowait,
                top_k=body.top_k,
                filters=body.filters.to_filters() if body.filters else None,
            )
            remember_exchange(request, trace_id, answer, body.collection)
            return answer
        finally:
            tokens.put_nowait(None)  # the end, whether answered or failed

    task = asyncio.create_task(run())
    started = time.perf_counter()
    try:
        first = await tokens.get()
        if first is None:
            await task  # nothing was streamed yet: a failure is still an ordinary HTTP error
    except BaseException:
        task.cancel()
        raise
    finally:
        request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
    events = _answer_events(first, tokens, task, trace_id, request.scope.get(REQUEST_ID_KEY, ""))
    headers = {**SSE_HEADERS, TRACE_HEADER: trace_id}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def _score(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _chunk_json(sc: ScoredChunk) -> dict[str, Any]:
    c = sc.chunk
    return {
        "chunk_id": c.id,
        "document_id": c.document_id,
        "source": c.source,
        "title": c.title,
        "heading_path": list(c.heading_path),
        "start": c.start,
        "end": c.end,
        "text": c.text,
        "score": _score(sc.score),
        "vector_score": _score(sc.vector_score),
        "keyword_score": _score(sc.keyword_score),
    }


def retrieval_json(retrieval: Retrieval, collection: str, seconds: float) -> dict[str, Any]:
    """The body of ``POST /v1/retrieve``."""
    return {
        "query": retrieval.query,
        "collection": collection,
        "chunks": [_chunk_json(sc) for sc in retrieval.chunks],
        "best_vector_score": round(retrieval.best_vector_score, 6),
        "timings": {**{k: round(v, 4) for k, v in retrieval.timings.items()}, "total": round(seconds, 4)},
    }


def rag_router(state: ApiState) -> APIRouter:
    """Answers, retrieval and the collection routes over ``state``'s container."""
    router = raw_router(tags=["rag"])
    container = state.container

    @router.post("/v1/answers", openapi_extra=openapi_body(AnswerRequest))
    async def answers(request: Request) -> Response:
        """A grounded answer with citations (``stream: true`` for server-sent events; see the module docs)."""
        body = parse_body(AnswerRequest, await request.body())
        answerer = await answerer_for(state)
        trace_id = new_trace_id()
        if body.stream:
            return await _stream_answer(request, answerer, body, trace_id)
        started = time.perf_counter()
        try:
            answer = await answerer.ask(
                body.question,
                body.collection,
                principal_of(request),
                top_k=body.top_k,
                filters=body.filters.to_filters() if body.filters else None,
            )
        finally:
            request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
        remember_exchange(request, trace_id, answer, body.collection)
        return json_response(answer_json(answer, trace_id), headers={TRACE_HEADER: trace_id})

    @router.post("/v1/retrieve", openapi_extra=openapi_body(RetrieveRequest))
    async def retrieve(request: Request) -> Response:
        """The best chunks for a query, with their fused, vector and keyword scores (no generation)."""
        body = parse_body(RetrieveRequest, await request.body())
        started = time.perf_counter()
        try:
            retrieval = await asyncio.to_thread(
                lambda: container.retriever.retrieve(
                    body.query,
                    body.collection,
                    principal_of(request),
                    top_k=body.top_k,
                    filters=body.filters.to_filters() if body.filters else None,
                )
            )
        finally:
            seconds = request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
        return json_response(retrieval_json(retrieval, body.collection, seconds))

    router.include_router(documents_router(state))
    return router
