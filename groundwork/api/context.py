"""Who is calling: the principal of a request, set by authentication.

Every route that reads documents, caches or traces asks :func:`principal_of`, so the permission scope
of a request is decided in one place.
"""

from __future__ import annotations

from starlette.requests import Request

from groundwork.types import LOCAL_ADMIN, Principal


def principal_of(request: Request) -> Principal:
    """The authenticated principal of ``request`` (the local admin while authentication is off)."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else LOCAL_ADMIN
