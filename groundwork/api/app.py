"""The HTTP server of the gateway: :func:`create_app` builds a FastAPI app over a :class:`Container`.

Routes take the raw :class:`~starlette.requests.Request` and parse their bodies with pydantic's JSON
parser, and answer with ``orjson`` bytes, so a request costs one parse and one serialisation. One
pure-ASGI middleware (:mod:`groundwork.api.middleware`) adds the request id and the overhead header and
enforces the body limit; errors are mapped in :mod:`groundwork.api.errors`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from groundwork.api.auth import SecurityMiddleware
from groundwork.api.chat import chat_router
from groundwork.api.embeddings import embeddings_router
from groundwork.api.errors import EXCEPTION_HANDLERS
from groundwork.api.middleware import MAX_BODY_BYTES, MAX_UPLOAD_BYTES, GatewayMiddleware
from groundwork.api.observability import install_observability
from groundwork.api.prompts import prompts_router
from groundwork.api.rag import rag_router
from groundwork.api.schemas import openapi_components
from groundwork.api.security import security_router
from groundwork.api.state import ApiState
from groundwork.api.system import system_router
from groundwork.container import Container


def create_app(
    container: Container, *, max_body_bytes: int = MAX_BODY_BYTES, max_upload_bytes: int = MAX_UPLOAD_BYTES
) -> FastAPI:
    """The gateway's ASGI app. The caller owns ``container`` (and closes it); the app closes its models."""
    state = ApiState(container)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(container.warm_up)  # open the store and the index before any request
        yield
        await state.aclose()
        await container.aclose_clients()

    app = FastAPI(
        title="Groundwork",
        summary="Self-hosted GenAI gateway: OpenAI-compatible chat, embeddings and grounded answers.",
        version="0.1.0",
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.groundwork = state
    app.include_router(chat_router(state))
    app.include_router(embeddings_router(state))
    app.include_router(system_router(state))
    app.include_router(rag_router(state))
    app.include_router(prompts_router(state))
    app.include_router(security_router(state))
    app.add_middleware(SecurityMiddleware, container=container)  # inside GatewayMiddleware (request ids)
    install_observability(app, state)  # tracing, metrics, cache policy; inside the gateway middleware
    app.add_middleware(GatewayMiddleware, max_body_bytes=max_body_bytes, max_upload_bytes=max_upload_bytes)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi_components())
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app
