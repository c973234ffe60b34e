"""Roles, permissions and document scope: pure policy, no I/O.

* A role maps to permissions: ``admin`` may do everything; ``builder`` manages collections, prompts and
  evals on top of what a ``user`` does; a ``user`` asks (chat, answers, retrieval, embeddings) and gives
  feedback.
* :func:`route_permission` names the permission an HTTP route needs. A route it does not know needs
  ``admin``: a new route is closed until it is listed here.
* A document is readable by a principal who shares one of its groups, and by admins. A document without
  groups is admin-only (fail closed); :class:`DocumentGroupsPolicy` can give documents ingested without
  groups default or per-folder groups instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from groundwork.errors import PermissionDeniedError
from groundwork.types import Principal

ASK = "ask"
FEEDBACK = "feedback"
COLLECTIONS = "collections"
PROMPTS = "prompts"
EVALS = "evals"
ADMIN = "admin"

ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "user": frozenset({ASK, FEEDBACK}),
    "builder": frozenset({ASK, FEEDBACK, COLLECTIONS, PROMPTS, EVALS}),
    "admin": frozenset({ASK, FEEDBACK, COLLECTIONS, PROMPTS, EVALS, ADMIN}),
}

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"})
"""Paths served without a key: health, metrics and the API description."""

_ROUTES: tuple[tuple[frozenset[str] | None, re.Pattern[str], str], ...] = tuple(
    (None if methods is None else frozenset(methods), re.compile(pattern), permission)
    for methods, pattern, permission in (
        (None, r"^/v1/(chat/completions|completions|embeddings|answers|retrieve)/?$", ASK),
        ({"GET", "HEAD"}, r"^/v1/models(/.*)?$", ASK),
        (None, r"^/v1/feedback(/.*)?$", FEEDBACK),
        (None, r"^/v1/collections(/.*)?$", COLLECTIONS),
        (None, r"^/v1/prompts(/.*)?$", PROMPTS),
        (None, r"^/v1/evals?(/.*)?$", EVALS),
    )
)


def has_permission(principal: Principal, permission: str) -> bool:
    """Whether ``principal``'s role grants ``permission``."""
    return permission in ROLE_PERMISSIONS.get(principal.role, frozenset())


def is_public(path: str) -> bool:
    """Whether ``path`` is served without authentication."""
    return path in PUBLIC_PATHS or path.startswith("/docs/")


def route_permission(method: str, path: str) -> str:
    """The permission a request needs (``admin`` for a route not listed)."""
    for methods, pattern, permission in _ROUTES:
        if (methods is None or method in methods) and pattern.match(path):
            return permission
    return ADMIN


def require(principal: Principal, permission: str, what: str) -> None:
    """Raise :class:`PermissionDeniedError` (403) unless ``principal`` holds ``permission``."""
    if not has_permission(principal, permission):
        allowed = sorted(role for role, perms in ROLE_PERMISSIONS.items() if permission in perms)
        raise PermissionDeniedError(
            f"the {principal.role} role may not {what}; it needs one of the roles: {', '.join(allowed)}"
        )


def can_read(principal: Principal, groups: Sequence[str]) -> bool:
    """Whether ``principal`` may read a document carrying ``groups`` (none: admins only)."""
    return principal.is_admin or bool(set(groups) & set(principal.groups))


def read_scope(principal: Principal) -> tuple[str, ...] | None:
    """The groups filter of ``principal``'s searches (``None``: everything, for admins)."""
    return None if principal.is_admin else tuple(sorted(principal.groups))


@dataclass(frozen=True, slots=True)
class DocumentGroupsPolicy:
    """Groups of a document ingested without explicit ones: the first matching folder rule, or defaults.

    ``rules`` map ``fnmatch`` patterns over the document's source path to groups, in order.
    """

    defaults: tuple[str, ...] = ()
    rules: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)

    @classmethod
    def from_config(cls, defaults: Sequence[str], rules: Mapping[str, Sequence[str]]) -> DocumentGroupsPolicy:
        return cls(tuple(defaults), tuple((p, tuple(g)) for p, g in rules.items()))

    def groups_for(self, source: str, explicit: Sequence[str] = ()) -> tuple[str, ...]:
        """The groups a document from ``source`` is stored with."""
        if explicit:
            return tuple(sorted(set(explicit)))
        normalised = source.replace("\\", "/")
        for pattern, groups in self.rules:
            if fnmatchcase(normalised, pattern):
                return tuple(sorted(set(groups)))
        return tuple(sorted(set(self.defaults)))
