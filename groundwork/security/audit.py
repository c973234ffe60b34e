"""The audit log: append-only records of who did what, when and from where; queryable by admins.

Recorded: key creation and revocation, document ingestion and deletion, prompt label moves and other
writes through the API, and denied requests (401, 403). Rows cannot be updated or deleted: triggers in
the database refuse it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from groundwork.errors import InputError
from groundwork.security.store import SecurityDatabase
from groundwork.stores.sqlite_db import run_script


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record. ``actor`` is a key's name and prefix (or ``cli:<user>``); ``source`` an address."""

    action: str
    actor: str
    target: str = ""
    outcome: str = "ok"
    source: str = ""
    request_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts)),
            "action": self.action,
            "actor": self.actor,
            "target": self.target,
            "outcome": self.outcome,
            "source": self.source,
            "request_id": self.request_id,
            "details": self.details,
        }


def _audit_v1(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            action TEXT NOT NULL,
            actor TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            outcome TEXT NOT NULL DEFAULT 'ok',
            source TEXT NOT NULL DEFAULT '',
            request_id TEXT NOT NULL DEFAULT '',
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_ts ON audit_log (ts)
        """,
    )
    for event in ("UPDATE", "DELETE"):  # a trigger body holds a `;`: one statement each
        db.execute(
            f"CREATE TRIGGER audit_no_{event.lower()} BEFORE {event} ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
        )


AUDIT_MIGRATIONS = (_audit_v1,)


class AuditLog:
    """Append and query audit records in the security database (SQLite or PostgreSQL)."""

    def __init__(self, db: SecurityDatabase) -> None:
        self.db = db

    def record(self, event: AuditEvent) -> None:
        """Append ``event`` (stamped now unless it carries a time)."""
        self.db.execute(
            "INSERT INTO audit_log (ts, action, actor, target, outcome, source, request_id, details)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                event.ts or time.time(),
                event.action,
                event.actor,
                event.target,
                event.outcome,
                event.source,
                event.request_id,
                json.dumps(event.details, default=str),
            ),
        )

    def query(
        self,
        *,
        since: float | None = None,
        actor: str | None = None,
        action: str | None = None,
        outcome: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """The newest records first, filtered (``action`` matches a prefix: ``key.`` finds key events)."""
        if not 1 <= limit <= 10_000:
            raise InputError("limit must be between 1 and 10000")
        clauses: list[str] = []
        args: list[object] = []
        if since is not None:
            clauses.append("ts >= ?")
            args.append(since)
        if actor:
            clauses.append("actor = ?")
            args.append(actor)
        if action:
            clauses.append("substr(action, 1, ?) = ?")
            args.extend([len(action), action])
        if outcome:
            clauses.append("outcome = ?")
            args.append(outcome)
        where = " AND ".join(clauses) or "1 = 1"
        rows = self.db.query(
            "SELECT id, ts, action, actor, target, outcome, source, request_id, details FROM audit_log"
            f" WHERE {where} ORDER BY id DESC LIMIT ?",
            [*args, limit],
        )
        return [
            AuditEvent(
                id=r[0],
                ts=r[1],
                action=r[2],
                actor=r[3],
                target=r[4],
                outcome=r[5],
                source=r[6],
                request_id=r[7],
                details=json.loads(r[8]),
            )
            for r in rows
        ]
