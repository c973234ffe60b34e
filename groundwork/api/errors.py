"""Errors at the HTTP edge: every failure becomes ``{"error": {...}}`` with the status of its category.

The body is compatible with OpenAI clients and carries Groundwork's fields::

    {"error": {"message", "type", "code", "id", "severity", "retryable", "param"}}

built from :meth:`GroundworkError.to_dict`. Request validation errors are 400 ``invalid_request_error``
naming the field path; an unexpected exception is a 500 whose id is logged with its traceback (never the
request's headers or body, so no credentials reach the logs).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from groundwork.errors import GroundworkError, InputError
from groundwork.observability.tracing import current_span, record_error

logger = logging.getLogger("groundwork.api")

REQUEST_ID_KEY = "groundwork.request_id"
"""Where the middleware puts the request id in the ASGI scope."""


class PayloadTooLargeError(InputError):
    """The request body is larger than the server accepts."""

    @property
    def http_status(self) -> int:
        return 413


class RequestValidationFailed(InputError):
    """The request body is not valid JSON or does not match the route's schema."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# pydantic names the member of a union that failed in the error's location ("stop.list[str].1");
# a client knows fields, not our type annotations.
_UNION_MEMBER = re.compile(r"^(str|int|float|bool|none|.*\[.*\]|function-.*)$")


def _path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and _UNION_MEMBER.match(p)))


def validation_error(errors: Sequence[Any], *, skip_body: bool = False) -> InputError:
    """Describe pydantic errors as one :class:`InputError`: ``"messages.0.role: Input should be ..."``."""
    found: list[tuple[str, str]] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = err.get("ctx", {}).get("error", err.get("msg", ""))
            return RequestValidationFailed(f"the request body is not valid JSON: {detail}")
        loc = tuple(err.get("loc", ()))
        if skip_body and loc[:1] == ("body",):
            loc = loc[1:]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        found.append((_path(loc) or "body", message))
    # Of a union's failed members, keep the one that got furthest ("stop.1", not also "stop").
    paths = {path for path, _ in found}
    found = [(p, m) for p, m in found if not any(q.startswith(p + ".") for q in paths)]
    problems = [f"{path}: {message}" for path, message in found[:5]]
    if len(found) > 5:
        problems.append(f"... and {len(found) - 5} more")
    param = found[0][0] if found else None
    return RequestValidationFailed("; ".join(problems) or "invalid request", param=param)


def error_payload(exc: GroundworkError, *, code: str | None = None, param: str | None = None) -> bytes:
    """The JSON body of an error response (also the payload of a stream's error event)."""
    d = exc.to_dict()
    is_input = isinstance(exc, RequestValidationFailed)
    body = {
        "message": d["message"],
        "type": "invalid_request_error" if is_input else d["type"],
        "code": code or d["code"],
        "id": d["id"],
        "severity": d["severity"],
        "retryable": d["retryable"],
        "param": param or getattr(exc, "param", None),
    }
    return orjson.dumps({"error": body})


def error_response(
    exc: GroundworkError, *, code: str | None = None, param: str | None = None, request_id: str = ""
) -> Response:
    """The HTTP response of a :class:`GroundworkError` (status by category, ``Retry-After`` on 429)."""
    status = exc.http_status
    log = logger.warning if status >= 500 else logger.info
    log(
        "request %s failed: %s %s (%s)",
        request_id,
        exc.error_id,
        type(exc).__name__,
        exc.message,
        extra={"error_id": exc.error_id, "severity": str(exc.severity), "error_type": type(exc).__name__},
    )
    record_error(current_span(), exc)  # the request's span carries the error id and category
    headers: Mapping[str, str] | None = None
    if status == 429:  # a RateLimitError, or a router's aggregate whose last attempt was one
        retry_after = getattr(exc, "retry_after", None)
        seconds = retry_after if isinstance(retry_after, int | float) else 1.0
        headers = {"retry-after": str(max(1, math.ceil(seconds)))}
    body = error_payload(exc, code=code, param=param)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def internal_error(exc: BaseException, request_id: str = "") -> GroundworkError:
    """Wrap an unexpected exception as a 500 and log it, with its traceback, under the error's id."""
    wrapped = GroundworkError("internal server error; quote the error id when reporting it")
    logger.error(
        "request %s: unexpected %s, error id %s",
        request_id,
        type(exc).__name__,
        wrapped.error_id,
        exc_info=exc,
        extra={"error_id": wrapped.error_id},
    )
    return wrapped


def _request_id(request: Request) -> str:
    return str(request.scope.get(REQUEST_ID_KEY, ""))


async def _on_groundwork_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GroundworkError)
    return error_response(exc, request_id=_request_id(request))


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError | ValidationError)
    err = validation_error(exc.errors(), skip_body=isinstance(exc, RequestValidationError))
    return error_response(err, request_id=_request_id(request))


_HTTP_MESSAGES = {404: "no such route", 405: "method not allowed on this route"}


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = _HTTP_MESSAGES.get(status) or str(exc.detail)
    err = GroundworkError(f"{message}: {request.method} {request.url.path}")
    d = err.to_dict()
    body = {
        "message": d["message"],
        "type": "invalid_request_error" if status < 500 else "api_error",
        "code": str(status),
        "id": d["id"],
        "severity": "info" if status < 500 else "error",
        "retryable": status >= 500,
        "param": None,
    }
    return Response(
        orjson.dumps({"error": body}), status_code=status, headers=exc.headers, media_type="application/json"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GroundworkError: _on_groundwork_error,
    RequestValidationError: _on_validation_error,
    ValidationError: _on_validation_error,
    StarletteHTTPException: _on_http_exception,
}
"""Handlers to pass to ``FastAPI(exception_handlers=...)``."""
