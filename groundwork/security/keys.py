"""API keys: created once, stored hashed, listed by prefix, revocable and expirable.

A key reads ``gw_<prefix>_<secret>``: the 8-character prefix identifies it in listings, logs and the
audit log; only the SHA-256 of the whole key is stored (the secret has 256 bits of entropy, so a fast
hash is enough and a stolen database does not reveal keys). A key carries its principal (name, role,
groups) and may carry its own rate limits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Literal, cast, get_args

from groundwork.errors import AuthError, InputError, NotFoundError
from groundwork.security.store import SecurityDatabase
from groundwork.stores.sqlite_db import run_script
from groundwork.types import Principal

RoleName = Literal["admin", "builder", "user"]
ROLES: tuple[str, ...] = get_args(RoleName)

_KEY = re.compile(r"^gw_([0-9a-f]{8})_([A-Za-z0-9_-]{20,100})$")
_GROUP = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds of ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or ``"2w"``; :class:`InputError` otherwise."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise InputError(f"invalid duration {text!r}: use a positive number and a unit, e.g. 30d, 12h, 90m")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def check_groups(groups: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Group names, stripped, deduplicated and sorted; :class:`InputError` naming a bad one."""
    out = sorted({g.strip() for g in groups if g.strip()})
    for g in out:
        if not _GROUP.match(g):
            raise InputError(f"invalid group name {g!r}: use 1-64 of letters, digits and . _ : @ -")
    return tuple(out)


def hash_key(token: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    prefix: str
    name: str
    role: RoleName
    groups: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None

    @property
    def principal(self) -> Principal:
        """Who a request made with this key is."""
        return Principal(name=self.name, role=self.role, groups=self.groups)

    def status(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def _keys_v1(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE api_keys (
            prefix TEXT PRIMARY KEY,
            hash TEXT NOT NULL,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            groups TEXT NOT NULL DEFAULT '[]',
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            rpm INTEGER,
            tpm INTEGER,
            max_concurrent INTEGER
        )
        """,
    )


KEY_MIGRATIONS = (_keys_v1,)

_COLUMNS = "prefix, name, role, groups, created_at, expires_at, revoked_at, rpm, tpm, max_concurrent"


def _row_key(row: tuple[object, ...]) -> ApiKey:
    return ApiKey(
        prefix=str(row[0]),
        name=str(row[1]),
        role=cast(RoleName, row[2]),
        groups=tuple(json.loads(str(row[3]))),
        created_at=float(cast(float, row[4])),
        expires_at=cast("float | None", row[5]),
        revoked_at=cast("float | None", row[6]),
        rpm=cast("int | None", row[7]),
        tpm=cast("int | None", row[8]),
        max_concurrent=cast("int | None", row[9]),
    )


MAX_LIMIT = 10**12
"""The largest rpm, tpm or concurrency a key may carry (far beyond any real limit; fits a 64-bit column)."""


KEY_CACHE_ENTRIES = 10_000
"""The most verified keys :class:`KeyStore` remembers at once (beyond it, it starts over)."""


class KeyStore:
    """API keys in the security database (``api_keys`` table): SQLite or PostgreSQL.

    A key that :meth:`authenticate` verified is remembered for ``cache_s`` seconds, by the SHA-256 of
    its token, so that :meth:`verified` can admit its next requests without reading the database (on
    the gateway, without a hop to a worker thread: that hop cost more than the rest of authentication).
    Revoking a key through this store forgets it at once; a key revoked by another process or replica is
    refused within ``cache_s``; expiry is checked on every use.
    """

    def __init__(self, db: SecurityDatabase, *, cache_s: float = 0.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._verified: dict[str, tuple[ApiKey, float]] = {}  # token hash -> (key, trusted until)
        self._revocations = 0  # revocations through this store: a verification that overlaps one is not kept

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
        """A new key: returns the token (shown once, never stored) and its record."""
        name = name.strip()
        if not name or len(name) > 100:
            raise InputError("a key needs a name of 1-100 characters (--name)")
        if role not in ROLES:
            raise InputError(f"invalid role {role!r}: use one of {', '.join(ROLES)}")
        if expires_in is not None and expires_in <= 0:
            raise InputError("--expires must be a positive duration")
        for label, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrent", max_concurrent)):
            if value is not None and not 1 <= value <= MAX_LIMIT:
                raise InputError(f"{label} must be between 1 and {MAX_LIMIT:,}")
        created = time.time() if now is None else now
        key = ApiKey(
            prefix=secrets.token_hex(4),
            name=name,
            role=cast(RoleName, role),
            groups=check_groups(groups),
            created_at=created,
            expires_at=None if expires_in is None else created + expires_in,
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
        )
        token = f"gw_{key.prefix}_{secrets.token_urlsafe(32)}"
        self.db.execute(
            f"INSERT INTO api_keys (hash, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                hash_key(token),
                key.prefix,
                key.name,
                key.role,
                json.dumps(list(key.groups)),
                key.created_at,
                key.expires_at,
                None,
                rpm,
                tpm,
                max_concurrent,
            ),
        )
        return token, key

    def get(self, prefix: str) -> ApiKey | None:
        """The key with this prefix (``gw_`` and the secret may be included), or ``None``."""
        prefix = prefix.removeprefix("gw_")[:8]
        rows = self.db.query(f"SELECT {_COLUMNS} FROM api_keys WHERE prefix = ?", (prefix,))
        return _row_key(rows[0]) if rows else None

    def list(self) -> list[ApiKey]:
        """Every key, oldest first (revoked and expired ones included)."""
        return [_row_key(r) for r in self.db.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at")]

    def revoke(self, prefix: str, now: float | None = None) -> ApiKey:
        """Revoke a key by its prefix; :class:`NotFoundError` when there is none."""
        key = self.get(prefix)
        if key is None:
            raise NotFoundError(f"no API key with prefix {prefix!r} (see `groundwork keys list`)")
        if key.revoked_at is None:
            self.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE prefix = ?",
                (time.time() if now is None else now, key.prefix),
            )
        self._revocations += 1
        self._forget(key.prefix)
        revoked = self.get(key.prefix)
        assert revoked is not None
        return revoked

    def verified(self, token: str, now: float | None = None) -> ApiKey | None:
        """The key of ``token`` if :meth:`authenticate` verified it less than ``cache_s`` ago and it has
        not expired since; ``None`` otherwise (then call :meth:`authenticate`). Reads no database."""
        entry = self._verified.get(hash_key(token.strip())) if self.cache_s > 0 else None
        if entry is None:
            return None
        key, until = entry
        now = time.time() if now is None else now
        return key if now < until and key.status(now) == "active" else None

    def _forget(self, prefix: str) -> None:
        for digest, (key, _) in list(self._verified.items()):
            if key.prefix == prefix:
                self._verified.pop(digest, None)

    def authenticate(self, token: str, now: float | None = None) -> ApiKey:
        """The active key of ``token``; :class:`AuthError` saying why not (never which part was wrong)."""
        match = _KEY.match(token.strip())
        if match is None:
            raise AuthError("invalid API key: expected `Authorization: Bearer gw_...`")
        revocations = self._revocations
        rows = self.db.query(f"SELECT hash, {_COLUMNS} FROM api_keys WHERE prefix = ?", (match.group(1),))
        digest = hash_key(token.strip())
        if not rows or not hmac.compare_digest(str(rows[0][0]), digest):
            raise AuthError("invalid API key")
        key = _row_key(rows[0][1:])
        now = time.time() if now is None else now
        status = key.status(now)
        if status == "revoked":
            raise AuthError(f"API key gw_{key.prefix}_... was revoked; ask an admin for a new key")
        if status == "expired":
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(key.expires_at or 0))
            raise AuthError(f"API key gw_{key.prefix}_... expired at {when}; ask an admin for a new key")
        if self.cache_s > 0 and revocations == self._revocations:  # else it may have been revoked since
            if len(self._verified) >= KEY_CACHE_ENTRIES:
                self._verified.clear()
            self._verified[digest] = (key, now + self.cache_s)
        return key
