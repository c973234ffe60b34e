"""The security subsystem of one data dir: keys, audit, limits and guards behind one object.

:class:`Security` is built by the container; the HTTP middleware (:mod:`groundwork.api.auth`) and the
``groundwork keys`` / ``groundwork audit`` commands use it. Keys and the audit log share one database:
the SQLite file ``<data_dir>/security.sqlite3``, or the shared PostgreSQL (``storage.backend: postgres``).
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from groundwork.config import SecuritySettings
from groundwork.security.audit import AUDIT_MIGRATIONS, AuditEvent, AuditLog
from groundwork.security.guards import Guards
from groundwork.security.keys import KEY_MIGRATIONS, ApiKey, KeyStore
from groundwork.security.ratelimit import CounterStore, RateDecision
from groundwork.security.store import SecurityDatabase
from groundwork.stores.sqlite_db import SQLiteDatabase

SECURITY_DB = "security.sqlite3"


def open_sqlite_security(data_dir: Path) -> SQLiteDatabase:
    """The embedded security database, ``<data_dir>/security.sqlite3``, migrated."""
    return SQLiteDatabase(
        data_dir / SECURITY_DB, (*KEY_MIGRATIONS, *AUDIT_MIGRATIONS), what="security database"
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one caller (``None``: unlimited)."""

    rpm: int | None
    tpm: int | None
    max_concurrent: int | None


def cli_actor() -> str:
    """How the command line appears in the audit log: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in this environment (containers)
        return "cli:unknown"


def key_actor(key: ApiKey | None) -> str:
    """How a key appears in the audit log: its name and prefix (``anonymous`` in dev mode)."""
    return "anonymous (auth off)" if key is None else f"{key.name} (gw_{key.prefix})"


class Security:
    """Keys, audit log, rate limiter and guards of one data dir."""

    def __init__(
        self,
        settings: SecuritySettings,
        data_dir: Path,
        counters: CounterStore,
        guards: Guards,
        db: SecurityDatabase | None = None,
    ) -> None:
        self.settings = settings
        self.db: SecurityDatabase = open_sqlite_security(data_dir) if db is None else db
        self.keys = KeyStore(self.db, cache_s=settings.key_cache_s)
        self.audit = AuditLog(self.db)
        self.counters = counters
        self.guards = guards

    def limits_of(self, key: ApiKey | None) -> Limits:
        """A key's own limits where it has them, the configured defaults otherwise."""
        d = self.settings.rate_limits
        if key is None:
            return Limits(d.requests_per_minute, d.tokens_per_minute, d.max_concurrent)
        return Limits(
            key.rpm or d.requests_per_minute,
            key.tpm or d.tokens_per_minute,
            key.max_concurrent or d.max_concurrent,
        )

    async def check_requests(self, caller: str, limits: Limits) -> RateDecision | None:
        """Take one request from ``caller``'s per-minute budget (``None`` when unlimited)."""
        if limits.rpm is None:
            return None
        return await self.counters.hit(f"rpm:{caller}", 1, limits.rpm, self.settings.rate_limits.window_s)

    async def check_tokens(self, caller: str, group: str, tokens: int, limits: Limits) -> RateDecision | None:
        """Take ``tokens`` from ``caller``'s per-minute budget for model group ``group``."""
        if limits.tpm is None or tokens <= 0:
            return None
        window = self.settings.rate_limits.window_s
        return await self.counters.hit(f"tpm:{caller}:{group}", tokens, limits.tpm, window)

    def record(self, event: AuditEvent) -> None:
        """Append to the audit log."""
        self.audit.record(event)

    async def aclose(self) -> None:
        await self.counters.aclose()

    def close(self) -> None:
        self.db.close()
