"""Admin routes of the security subsystem: ``GET /v1/audit``, ``GET|POST /v1/keys``,
``DELETE /v1/keys/{prefix}``. The security middleware lets only admins reach them."""

from __future__ import annotations

import asyncio
import time
from typing import Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from groundwork.api.context import principal_of
from groundwork.api.errors import REQUEST_ID_KEY, RequestValidationFailed
from groundwork.api.routing import raw_router
from groundwork.api.schemas import parse_body
from groundwork.api.state import ApiState
from groundwork.security.audit import AuditEvent
from groundwork.security.keys import MAX_LIMIT, ApiKey


class KeyCreate(BaseModel):
    """``POST /v1/keys``: a new API key (the response shows it once)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    role: Literal["admin", "builder", "user"] = "user"
    groups: list[str] = Field(default_factory=list, max_length=100)
    expires_in_s: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    rpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    tpm: int | None = Field(default=None, ge=1, le=MAX_LIMIT)
    max_concurrent: int | None = Field(default=None, ge=1, le=MAX_LIMIT)


_KEY_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": KeyCreate.model_json_schema()}},
    }
}
_PREFIX_PARAM = {
    "parameters": [
        {"name": "prefix", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "The key's prefix, e.g. gw_1a2b3c4d."}
    ]
}  # fmt: skip


def _json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _key_json(key: ApiKey) -> dict[str, object]:
    return {
        "prefix": f"gw_{key.prefix}",
        "name": key.name,
        "role": key.role,
        "groups": list(key.groups),
        "status": key.status(time.time()),
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise RequestValidationFailed(f"{name}: must be an integer from {low} to {high}", param=name)
    return int(raw)


def security_router(state: ApiState) -> APIRouter:
    """The audit log and key management over HTTP (admins only)."""
    router = raw_router(tags=["security"])
    container = state.container

    def audit(request: Request, action: str, target: str) -> None:
        p = principal_of(request)
        rid = str(request.scope.get(REQUEST_ID_KEY, ""))
        event = AuditEvent(action=action, actor=p.name, target=target, request_id=rid)
        container.security.record(event)

    @router.get("/v1/audit")
    async def audit_log(request: Request) -> Response:
        """Audit records, newest first; query: ``since_s`` (seconds back), ``actor``, ``action``,
        ``limit``."""
        limit = _int_param(request, "limit", 100, 1, 10_000)
        since_s = _int_param(request, "since_s", 0, 0, 10 * 365 * 86400)
        q = request.query_params
        events = await asyncio.to_thread(
            container.security.audit.query,
            since=time.time() - since_s if since_s else None,
            actor=q.get("actor") or None,
            action=q.get("action") or None,
            limit=limit,
        )
        return _json({"events": [e.to_dict() for e in events]})

    @router.get("/v1/keys")
    async def list_keys(_: Request) -> Response:
        """Every API key by prefix (never the key itself)."""
        keys = await asyncio.to_thread(container.security.keys.list)
        return _json({"keys": [_key_json(k) for k in keys]})

    @router.post("/v1/keys", openapi_extra=_KEY_BODY)
    async def create_key(request: Request) -> Response:
        """Create a key; the response carries it once (``key``)."""
        body = parse_body(KeyCreate, await request.body())

        def create() -> tuple[str, ApiKey]:
            token, key = container.security.keys.create(
                body.name,
                body.role,
                body.groups,
                expires_in=body.expires_in_s,
                rpm=body.rpm,
                tpm=body.tpm,
                max_concurrent=body.max_concurrent,
            )
            audit(request, "key.create", f"gw_{key.prefix}")
            return token, key

        token, key = await asyncio.to_thread(create)
        return _json({**_key_json(key), "key": token}, 201)

    @router.delete("/v1/keys/{prefix}", openapi_extra=_PREFIX_PARAM)
    async def revoke_key(request: Request) -> Response:
        """Revoke a key by prefix (404 when there is none)."""
        prefix = str(request.path_params["prefix"])

        def revoke() -> ApiKey:
            key = container.security.keys.revoke(prefix)
            audit(request, "key.revoke", f"gw_{key.prefix}")
            return key

        return _json(_key_json(await asyncio.to_thread(revoke)))

    return router
