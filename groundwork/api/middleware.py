"""One pure-ASGI middleware for every HTTP request: request id, overhead timing and the body size limit.

* ``x-request-id``: the client's value is echoed when it is a sane token (1-128 of ``A-Za-z0-9._:-``),
  otherwise a new one is generated. Handlers read it from ``scope["groundwork.request_id"]``.
* ``x-groundwork-overhead-ms``: the time the gateway itself added, measured from the moment the
  middleware is called (headers parsed by the server) until the response headers are sent, minus the
  time the handler spent awaiting the model (``scope["groundwork.model_s"]``; for the chat route, the
  :class:`~groundwork.models.base.ChatModel` the container returns, router included; for embeddings, the
  embedder's worker thread). A non-streamed response is fully built before its headers go out, so the
  figure covers reading and validating the body, the conversion and the serialisation. A stream's
  headers go out right after the model's first chunk, so for streams it is "time to first byte minus the
  model's time to first token"; later chunks are not counted.
* Body size: a ``Content-Length`` over the limit is answered 413 without reading the body; a body
  without one (chunked) is counted as it is received and stops with a 413 once over the limit.
* An exception no handler caught becomes a 500 with an error id (logged with its traceback), sent through
  this middleware so it still carries the two headers.
"""

from __future__ import annotations

import os
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from groundwork.api.errors import (
    REQUEST_ID_KEY,
    PayloadTooLargeError,
    error_response,
    internal_error,
)

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body accepted (4 MiB), except for uploads."""

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
"""The largest body of ``POST /v1/collections/{c}/documents`` (64 MiB: several files of up to 20 MiB)."""

_UPLOAD_PATH = re.compile(r"^/v1/collections/[^/]+/documents/?$")

MODEL_TIME_KEY = "groundwork.model_s"
"""Where handlers add the seconds they spent awaiting a model, in the ASGI scope."""

_SANE_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the request body is larger than the limit of {limit} bytes")


class GatewayMiddleware:
    """Request id, overhead header, body size limit and last-resort 500s (see the module docstring)."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES, max_upload_bytes: int = MAX_UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                length = value
        if request_id is None or _SANE_ID.fullmatch(request_id) is None:
            request_id = os.urandom(12).hex().encode()
        rid = request_id.decode()
        scope[REQUEST_ID_KEY] = rid
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                overhead = time.perf_counter() - start - scope.get(MODEL_TIME_KEY, 0.0)
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id),
                    (b"x-groundwork-overhead-ms", b"%.3f" % (max(overhead, 0.0) * 1000)),
                ]
            await send(message)

        limit = self.max_body_bytes
        if scope["method"] == "POST" and _UPLOAD_PATH.match(scope["path"]):
            limit = self.max_upload_bytes
        if length is not None:  # the server reads exactly this many bytes: no need to count
            if length.isdigit() and int(length) > limit:
                await error_response(_too_large(limit), request_id=rid)(scope, receive, send_with_headers)
                return
        else:
            receive = _counting(receive, limit)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if started:
                raise
            response = error_response(internal_error(exc, rid), request_id=rid)
            await response(scope, receive, send_with_headers)


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large(limit)
        return message

    return counted
