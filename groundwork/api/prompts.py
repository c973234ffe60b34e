"""The prompt registry over HTTP.

::

    GET  /v1/prompts                                  every prompt: latest version, labels, variables
    POST /v1/prompts                                  {name, template, message} -> a new version (201)
    GET  /v1/prompts/{name}                           latest version and labels
    GET  /v1/prompts/{name}/versions                  every version and every label move
    GET  /v1/prompts/{name}/versions/{version}        one version
    GET  /v1/prompts/{name}/labels/{label}            the version a label points at
    POST /v1/prompts/{name}/labels/{label}            {version} -> move the label
    POST /v1/prompts/{name}/labels/{label}/rollback   {to?} -> move it back
    GET  /v1/prompts/{name}/diff?a=1&b=2              unified diff of two versions
    POST /v1/prompts/{name}/render                    {version, variables} -> messages (strict)
    POST /v1/evals/runs                               {suite, compare?} -> results, run as the caller

Everyone may read and render; creating versions and moving labels needs the ``builder`` or ``admin``
role (:func:`~groundwork.api.context.principal_of`), and the caller is recorded as author or actor.
An evaluation run over HTTP answers when every case is done (minutes on the embedded model) and runs
as the caller, so a RAG suite sees only the documents the caller may read. Gated promotion is a CLI
command (``groundwork prompts label NAME production --version V --gate SUITE``), not a route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from groundwork.api.context import principal_of
from groundwork.api.rag import json_response
from groundwork.api.routing import raw_router
from groundwork.api.schemas import parse_body
from groundwork.api.state import ApiState
from groundwork.errors import InputError, PermissionDeniedError
from groundwork.evals.compare import compare_runs
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import Suite, load_suite, parse_suite, shipped_suite_path
from groundwork.evals.targets import build_target
from groundwork.prompts.registry import PRODUCTION, PromptRegistry
from groundwork.prompts.template import PromptTemplate
from groundwork.types import Principal


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreatePromptRequest(_Body):
    """A new version of a prompt (a new name starts at version 1)."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_.\-]{0,99}$", description="Lower-case letters, digits, _ . -"
    )
    template: dict[str, Any] = Field(
        description="{text} or {messages: [{role, content}]}, optional variables (schema) and model."
    )
    message: str = Field(default="", max_length=2000)


class LabelRequest(_Body):
    """Point a label at a version (a number, or another label)."""

    version: int | str
    reason: str = Field(default="", max_length=2000)


class RollbackRequest(_Body):
    """Move a label back: to ``to``, or to where it pointed before its last move."""

    to: int | None = Field(default=None, ge=1)


class RenderRequest(_Body):
    """Render a version with these variables (strict: missing or unexpected variables are errors)."""

    version: int | str = PRODUCTION
    variables: dict[str, Any] = Field(default_factory=dict)


_PATH_DOCS = {
    "name": "The prompt's name (lower-case letters, digits, '_', '.', '-').",
    "version": "A version number, a label, or `latest`.",
    "label": "A label: production, staging or a custom one.",
}


def _params(*names: str) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": _PATH_DOCS[n],
            }
            for n in names
        ]
    }


class EvalRunRequest(_Body):
    """Run an evaluation suite as the caller (whose documents a RAG target may read)."""

    suite: str | dict[str, Any] = Field(description="A shipped suite's name (handbook) or a suite object.")
    compare: list[str] | None = Field(
        default=None, min_length=2, max_length=2, description="Two variants A and B, as `eval --compare`."
    )


def _suite_of(body: EvalRunRequest) -> Suite:
    """The suite of a request: shipped or inline; never a file on the server, no ingestion of server paths."""
    if isinstance(body.suite, str):
        suite = load_suite(shipped_suite_path(body.suite))
    else:
        suite = parse_suite(body.suite, source="in the request body")
    foreign = [p for p in suite.target.ingest if p != "samples:handbook"]
    if foreign:
        raise InputError(
            f"suite.target.ingest: over HTTP a suite may only ingest samples:handbook, not {foreign}; "
            "upload documents with POST /v1/collections/{collection}/documents first"
        )
    return suite


def _body_doc(model: type[BaseModel], *path: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
    return {**body, **(_params(*path) if path else {})}


def _param(request: Request, name: str) -> str:
    return str(request.path_params[name])


def _may_write(principal: Principal) -> Principal:
    if principal.role not in ("admin", "builder"):
        raise PermissionDeniedError(
            f"{principal.name!r} ({principal.role}) may read prompts but not change them; "
            "creating versions and moving labels needs the builder or admin role"
        )
    return principal


def prompts_router(state: ApiState) -> APIRouter:
    """The registry routes over ``state``'s container."""
    router = raw_router(tags=["prompts"])

    def registry() -> PromptRegistry:
        return state.container.prompts

    @router.get("/v1/prompts")
    async def list_prompts(request: Request) -> Response:
        """Every prompt with its latest version, labels and variables."""
        reg = registry()
        data = []
        for name in reg.names():
            latest = reg.get(name)
            variables = list(latest.template.variable_names)
            data.append(
                {"name": name, "latest": latest.version, "labels": reg.labels(name), "variables": variables}
            )
        return json_response({"object": "list", "data": data})

    @router.post("/v1/prompts", openapi_extra=_body_doc(CreatePromptRequest), status_code=201)
    async def create_prompt(request: Request) -> Response:
        """Store a new version; when it equals the latest version, that version (``created: false``)."""
        body = parse_body(CreatePromptRequest, await request.body())
        author = _may_write(principal_of(request)).name
        reg = registry()
        before = reg.latest(body.name)
        version = reg.create(body.name, PromptTemplate.from_dict(body.template), author, body.message)
        created = before is None or before.version != version.version
        return json_response({**version.to_dict(), "created": created}, status=201 if created else 200)

    @router.get("/v1/prompts/{name}", openapi_extra=_params("name"))
    async def show_prompt(request: Request) -> Response:
        """The latest version of a prompt and its labels."""
        name = _param(request, "name")
        reg = registry()
        return json_response({"name": name, "labels": reg.labels(name), "latest": reg.get(name).to_dict()})

    @router.get("/v1/prompts/{name}/versions", openapi_extra=_params("name"))
    async def versions(request: Request) -> Response:
        """Every version (oldest first) and every label move."""
        name = _param(request, "name")
        found, events = registry().history(name)
        return json_response(
            {
                "object": "list",
                "data": [v.to_dict() for v in found],
                "label_events": [e.to_dict() for e in events],
            }
        )

    @router.get("/v1/prompts/{name}/versions/{version}", openapi_extra=_params("name", "version"))
    async def version(request: Request) -> Response:
        """One version (a number, a label or ``latest``)."""
        name, version = _param(request, "name"), _param(request, "version")
        return json_response(registry().get(name, version).to_dict())

    _add_label_routes(router, registry)

    @router.get("/v1/prompts/{name}/diff", openapi_extra=_params("name"))
    async def diff(request: Request) -> Response:
        """Unified diff between versions ``a`` and ``b`` (query parameters; default previous -> latest)."""
        name = _param(request, "name")
        reg = registry()
        latest = reg.get(name).version
        a = request.query_params.get("a", str(max(1, latest - 1)))
        b = request.query_params.get("b", str(latest))
        old, new = reg.get(name, a), reg.get(name, b)
        return json_response({"a": old.ref, "b": new.ref, "diff": reg.diff(name, a, b)})

    @router.post("/v1/prompts/{name}/render", openapi_extra=_body_doc(RenderRequest, "name"))
    async def render(request: Request) -> Response:
        """Render a version strictly; a bad variable is a 400 naming the variable and the rule."""
        name = _param(request, "name")
        body = parse_body(RenderRequest, await request.body())
        version, messages = registry().render(name, body.version, body.variables)
        return json_response(
            {"prompt": version.ref, "messages": [{"role": m.role, "content": m.content} for m in messages]}
        )

    router.include_router(evals_router(state))
    return router


def _add_label_routes(router: APIRouter, registry: Callable[[], PromptRegistry]) -> None:
    """The label routes: read, move, roll back."""

    @router.get("/v1/prompts/{name}/labels/{label}", openapi_extra=_params("name", "label"))
    async def get_label(request: Request) -> Response:
        """The version ``label`` points at."""
        name, label = _param(request, "name"), _param(request, "label")
        return json_response(registry().get(name, label).to_dict())

    @router.post("/v1/prompts/{name}/labels/{label}", openapi_extra=_body_doc(LabelRequest, "name", "label"))
    async def set_label(request: Request) -> Response:
        """Point ``label`` at a version; the move is recorded with the caller as actor."""
        name, label = _param(request, "name"), _param(request, "label")
        body = parse_body(LabelRequest, await request.body())
        actor = _may_write(principal_of(request)).name
        event = registry().set_label(name, label, body.version, actor, body.reason or "api")
        return json_response(event.to_dict())

    @router.post(
        "/v1/prompts/{name}/labels/{label}/rollback",
        openapi_extra=_body_doc(RollbackRequest, "name", "label"),
    )
    async def rollback(request: Request) -> Response:
        """Move ``label`` back (to ``to``, or to where it was before its last move)."""
        name, label = _param(request, "name"), _param(request, "label")
        raw = await request.body()
        body = parse_body(RollbackRequest, raw) if raw.strip() else RollbackRequest()
        actor = _may_write(principal_of(request)).name
        return json_response(registry().rollback(name, label, body.to, actor).to_dict())


def evals_router(state: ApiState) -> APIRouter:
    """``POST /v1/evals/runs`` over ``state``'s container (included by :func:`prompts_router`)."""
    router = raw_router(tags=["evals"])

    @router.post("/v1/evals/runs", openapi_extra=_body_doc(EvalRunRequest))
    async def run_eval(request: Request) -> Response:
        """Run a suite (or compare two variants) as the caller; answers when every case is done."""
        body = parse_body(EvalRunRequest, await request.body())
        principal = _may_write(principal_of(request))
        suite = _suite_of(body)
        container = state.container
        container.chat_model  # noqa: B018 - the router, built on the loop (as the answer routes do)
        await asyncio.to_thread(lambda: container.answerer)
        if suite.target.ingest:
            await asyncio.to_thread(
                container.ingestor.ingest_paths, suite.ingest_paths(), suite.target.collection, []
            )
        deps, evaluator = container.eval_deps(), container.evaluator()
        concurrency = container.settings.prompts.eval_concurrency
        variants: list[str | None] = list(body.compare) if body.compare else [None]
        runs = [
            await run_suite(suite, build_target(suite, deps, v, principal), evaluator, concurrency)
            for v in variants
        ]
        if len(runs) == 1:
            return json_response({"run": runs[0].to_dict()})
        p = container.settings.prompts
        comparison = compare_runs(runs[0], runs[1], p.bootstrap_resamples, p.confidence)
        return json_response(
            {"a": runs[0].to_dict(), "b": runs[1].to_dict(), "comparison": comparison.to_dict()}
        )

    return router
