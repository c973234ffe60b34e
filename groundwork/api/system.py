"""``GET /v1/models`` (the configured model groups), ``GET /healthz`` and ``GET /readyz``."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from groundwork.api.observability import readiness_problems
from groundwork.api.routing import raw_router
from groundwork.api.state import ApiState
from groundwork.errors import GroundworkError

_OK = orjson.dumps({"status": "ok"})


def _json(content: bytes, status: int = 200) -> Response:
    return Response(content, status_code=status, media_type="application/json")


def models_body(state: ApiState) -> bytes:
    """The OpenAI model list of the configured model groups."""
    groups = state.container.settings.models.groups
    data = [
        {"id": name, "object": "model", "created": state.started_at, "owned_by": "groundwork"}
        for name in groups
    ]
    return orjson.dumps({"object": "list", "data": data})


def _store_problems(state: ApiState) -> list[str]:
    """Why the document store is not usable (empty when it is). Blocking: run it in a thread."""
    try:
        state.container.documents.generation  # noqa: B018 - opens the store and reads it
    except GroundworkError as exc:
        return [f"document store: {exc.message} (error id {exc.error_id})"]
    except Exception as exc:  # a store that fails in an unplanned way is still "not ready"
        return [f"document store: {type(exc).__name__}: {exc}"]
    return []


def _model_problems(state: ApiState) -> list[str]:
    """Why a configured model group cannot be served (empty when all can).

    Runs on the event loop, like the requests that build the same models, so the container's lazily
    built parts are never built twice by racing threads.
    """
    groups = state.container.settings.models.groups
    if not groups:
        return ["no model groups are configured (models.groups)"]
    problems = []
    for group in groups:
        try:
            state.chat_model(group)
        except GroundworkError as exc:
            problems.append(f"model group {group!r}: {exc.message} (error id {exc.error_id})")
    return problems


def system_router(state: ApiState) -> APIRouter:
    """Model list and health routes."""
    router = raw_router()
    models = models_body(state)  # settings are frozen: build once

    @router.get("/v1/models", tags=["openai"])
    async def list_models(_: Request) -> Response:
        """The model groups this gateway serves (OpenAI-compatible)."""
        return _json(models)

    @router.get("/healthz", tags=["health"])
    async def healthz(_: Request) -> Response:
        """The process is alive."""
        return _json(_OK)

    @router.get("/readyz", tags=["health"])
    async def readyz(_: Request) -> Response:
        """The store, the cache backend (Redis) and model groups are usable; 503 with reasons otherwise."""
        reasons = _model_problems(state) + await asyncio.to_thread(_store_problems, state)
        reasons += await asyncio.to_thread(readiness_problems, state)  # cache (Redis), trace store
        if reasons:
            return _json(orjson.dumps({"status": "unavailable", "reasons": reasons}), 503)
        if degraded := await asyncio.to_thread(state.container.degraded):  # still serving: 200
            return _json(orjson.dumps({"status": "degraded", "degraded": degraded}))
        return _json(_OK)

    return router
