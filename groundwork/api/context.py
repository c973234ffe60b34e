"""Who is calling: the principal of a request, set by authentication.

Every route that reads documents, caches or traces asks :func:`principal_of`, so the permission scope
of a request is decided in one place.
"""

from __future__ import annotations

from starlette.requests import Request

from groundwork.errors import AuthError
from groundwork.types import Principal


def principal_of(request: Request) -> Principal:
    """The authenticated principal of ``request``, set by :mod:`groundwork.api.auth`.

    With ``security.auth: false`` (dev mode) the middleware sets the local admin. A request that did not
    pass the middleware has no principal and is refused (fail closed), never treated as an admin.
    """
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise AuthError("the request carries no authenticated principal")
    return principal


def principal_name(request: Request) -> str:
    """The caller's name for logs and traces: ``anonymous`` before (or without) authentication."""
    principal = getattr(request.state, "principal", None)
    return principal.name if isinstance(principal, Principal) else "anonymous"
