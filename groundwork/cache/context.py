"""Who is asking and what they allow: the cache policy of the running request, in a context variable.

The HTTP middleware sets it for each request (:func:`use_policy`), resolving the principal lazily so
that authentication, which may run after it, decides the scope. The cache decorators read it, and record
what they did in the request's :class:`CacheOutcome`, which the middleware turns into the
``x-groundwork-cache`` header. Without a policy (the Python API, the CLI) the scope is the local
admin's, as for every other read on one machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from groundwork.cache.keys import permission_scope
from groundwork.types import LOCAL_ADMIN, Principal


@dataclass(slots=True)
class CacheOutcome:
    """What the cache did for a request: ``hit``, ``miss`` or ``bypass`` (the last lookup wins)."""

    status: str = "bypass"
    kind: str | None = None
    """``exact`` or ``semantic`` for a hit."""
    similarity: float | None = None


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one request may use the cache. ``principal`` is called when the scope is first needed."""

    principal: Callable[[], Principal] = lambda: LOCAL_ADMIN
    read: bool = True
    """``Cache-Control: no-cache`` turns reading off: the answer is computed afresh (and stored)."""
    write: bool = True
    """``Cache-Control: no-store`` turns both off."""
    prompt_version: str | None = None
    outcome: CacheOutcome = field(default_factory=CacheOutcome)

    @property
    def scope(self) -> str:
        return permission_scope(self.principal())


_POLICY: ContextVar[CachePolicy | None] = ContextVar("groundwork_cache_policy", default=None)


def parse_cache_control(value: str | None) -> tuple[bool, bool]:
    """``(read, write)`` allowed by a ``Cache-Control`` request header."""
    if not value:
        return True, True
    directives = {d.strip().split("=", 1)[0].lower() for d in value.split(",")}
    if "no-store" in directives:
        return False, False
    if "no-cache" in directives or ("max-age" in directives and "max-age=0" in value.replace(" ", "")):
        return False, True
    return True, True


def use_policy(policy: CachePolicy) -> CacheOutcome:
    """Make ``policy`` the current one (for the rest of this task) and return its outcome."""
    _POLICY.set(policy)
    return policy.outcome


@contextmanager
def cache_policy(
    principal: Principal = LOCAL_ADMIN, cache_control: str | None = None, prompt_version: str | None = None
) -> Iterator[CacheOutcome]:
    """Run a block with the cache policy of ``principal`` and a ``Cache-Control`` value."""
    read, write = parse_cache_control(cache_control)
    token = _POLICY.set(CachePolicy(lambda: principal, read, write, prompt_version))
    try:
        yield _POLICY.get().outcome  # type: ignore[union-attr]
    finally:
        _POLICY.reset(token)


def current_policy() -> CachePolicy:
    """The running request's policy (a fresh local-admin one when none is set)."""
    return _POLICY.get() or CachePolicy()
