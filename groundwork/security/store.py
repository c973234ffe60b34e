"""The storage seam of the security package: what keys and the audit log persist, and where.

:class:`SecurityDatabase` is the small SQL surface :class:`~groundwork.security.keys.KeyStore` and
:class:`~groundwork.security.audit.AuditLog` run on (``?`` placeholders, portable SQL). Two backends
provide it: :class:`~groundwork.stores.sqlite_db.SQLiteDatabase` (``<data_dir>/security.sqlite3``) and
:class:`~groundwork.security.postgres_store.PostgresSecurityDatabase` (the shared PostgreSQL of a
scale-out deployment). :class:`ApiKeyStore` and :class:`AuditStore` are what the rest of Groundwork
relies on; the conformance suite :mod:`groundwork.testing.security_store` holds every backend to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from groundwork.security.audit import AuditEvent
    from groundwork.security.keys import ApiKey


class SecurityDatabase(Protocol):
    """Portable SQL (``?`` placeholders) over the ``api_keys`` and ``audit_log`` tables."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one statement."""
        ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; the number of rows changed."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...


class ApiKeyStore(Protocol):
    """API keys: created once (only their hash is stored), listed, revoked, authenticated."""

    def create(
        self,
        name: str,
        role: str,
        groups: list[str] | tuple[str, ...] = (),
        *,
        expires_in: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
        now: float | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key: its token (shown once) and record."""
        ...

    def get(self, prefix: str) -> ApiKey | None:
        """The key with this prefix, or ``None``."""
        ...

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        ...

    def revoke(self, prefix: str, now: float | None = None) -> ApiKey:
        """Revoke a key by its prefix."""
        ...

    def authenticate(self, token: str, now: float | None = None) -> ApiKey:
        """The active key of ``token``; :class:`~groundwork.errors.AuthError` otherwise."""
        ...


class AuditStore(Protocol):
    """The append-only audit log."""

    def record(self, event: AuditEvent) -> None:
        """Append ``event``."""
        ...

    def query(
        self,
        *,
        since: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """The newest records first, filtered."""
        ...
