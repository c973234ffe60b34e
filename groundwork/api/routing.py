"""A FastAPI route without FastAPI's per-request machinery, for the hot paths.

FastAPI resolves dependencies and validates and serialises through its own layers on every request
(some 30 µs of CPU here). Groundwork's handlers take the raw :class:`~starlette.requests.Request`, parse
their bodies with pydantic in one pass and return ready ``Response`` objects, so :class:`RawRoute`
calls the endpoint directly (the documented ``get_route_handler`` hook). The route stays an
``APIRoute``: it is in the OpenAPI document, with ``openapi_extra`` for its request body.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class RawRoute(APIRoute):
    """An ``APIRoute`` whose endpoint is ``async (request) -> Response``, called as it is."""

    def get_route_handler(self) -> Endpoint:
        endpoint: Endpoint = self.endpoint
        return endpoint


def raw_router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` of :class:`RawRoute`\\ s."""
    return APIRouter(route_class=RawRoute, **kwargs)
