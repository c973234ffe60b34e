"""``POST /v1/embeddings``: OpenAI-compatible, ``encoding_format`` ``float`` or ``base64``.

``base64`` (what the openai SDK asks for by default) is each vector's float32 little-endian bytes.
The embedder and the token count run in a worker thread (or the embedder's own ``aembed``), never on
the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from groundwork.api.middleware import MODEL_TIME_KEY
from groundwork.api.routing import raw_router
from groundwork.api.schemas import EmbeddingRequest, openapi_body, parse_body
from groundwork.api.state import ApiState
from groundwork.errors import InputError
from groundwork.models.base import EmbeddingModel, Vectors


def _count_tokens(embedder: EmbeddingModel, texts: Sequence[str]) -> int:
    return sum(embedder.count_tokens(t) for t in texts)


def _embed_and_count(embedder: EmbeddingModel, texts: Sequence[str]) -> tuple[Vectors, int]:
    return embedder.embed(texts), _count_tokens(embedder, texts)


async def embed(embedder: EmbeddingModel, texts: Sequence[str]) -> tuple[Vectors, int]:
    """The vectors and the token count, computed off the event loop (one thread hop when possible)."""
    if type(embedder).aembed is EmbeddingModel.aembed:  # the default aembed is a thread hop too
        return await asyncio.to_thread(_embed_and_count, embedder, texts)
    vectors, tokens = await asyncio.gather(
        embedder.aembed(texts), asyncio.to_thread(_count_tokens, embedder, texts)
    )
    return vectors, tokens


def embeddings_body(vectors: Vectors, model: str, tokens: int, encoding: str) -> bytes:
    """A ``list`` of ``embedding`` objects as JSON bytes."""
    if encoding == "base64":
        rows = np.ascontiguousarray(vectors, dtype="<f4")
        data = [
            {"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode()}
            for i, row in enumerate(rows)
        ]
    else:
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )


def embeddings_router(state: ApiState) -> APIRouter:
    """The embeddings route over the container's embedder."""
    router = raw_router(tags=["openai"])

    @router.post("/v1/embeddings", openapi_extra=openapi_body(EmbeddingRequest))
    async def embeddings(request: Request) -> Response:
        """Embed one text or a list of texts (OpenAI-compatible)."""
        body = parse_body(EmbeddingRequest, await request.body())
        embedder = state.container.embedder
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise InputError(
                f"dimensions={body.dimensions} is not supported: {embedder.name} gives "
                f"{embedder.dimensions}; omit `dimensions`"
            )
        texts = body.texts()
        started = time.perf_counter()
        try:
            vectors, tokens = await embed(embedder, texts)
        finally:
            request.scope[MODEL_TIME_KEY] = time.perf_counter() - started
        content = embeddings_body(vectors, embedder.name, tokens, body.encoding_format)
        return Response(content, media_type="application/json")

    return router
