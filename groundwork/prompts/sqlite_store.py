"""The embedded prompt store: one SQLite file (``<data_dir>/prompts.sqlite3``).

Versions are immutable in the database too: triggers abort any ``UPDATE`` or ``DELETE`` of a version
row, so not even a stray script can rewrite what an answer says it used.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from groundwork.errors import NotFoundError
from groundwork.prompts.store import LabelEvent, PromptVersion
from groundwork.prompts.template import PromptTemplate
from groundwork.stores.sqlite_db import Migration, SQLiteDatabase, run_script


def _m001_versions_and_labels(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE prompt_versions (
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            template TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            author TEXT NOT NULL,
            message TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (name, version)
        );
        CREATE TABLE prompt_labels (
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (name, label),
            FOREIGN KEY (name, version) REFERENCES prompt_versions (name, version)
        );
        CREATE TABLE prompt_label_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            label TEXT NOT NULL,
            version INTEGER NOT NULL,
            previous INTEGER,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX prompt_label_events_by_name ON prompt_label_events (name, label, id)
        """,
    )
    for action in ("UPDATE", "DELETE"):  # one statement each: run_script splits on ';'
        db.execute(
            f"CREATE TRIGGER prompt_versions_no_{action.lower()} BEFORE {action} ON prompt_versions "
            "BEGIN SELECT RAISE(ABORT, 'prompt versions are immutable'); END"
        )


MIGRATIONS: list[Migration] = [_m001_versions_and_labels]

_COLUMNS = "name, version, template, content_hash, author, message, created_at"


def _version(row: tuple[str, int, str, str, str, str, float]) -> PromptVersion:
    name, version, template, content_hash, author, message, created_at = row
    return PromptVersion(
        name,
        version,
        PromptTemplate.from_dict(json.loads(template)),
        content_hash,
        author,
        message,
        created_at,
    )


class SQLitePromptStore:
    """:class:`~groundwork.prompts.store.PromptStore` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.db = SQLiteDatabase(path, MIGRATIONS, what="prompt registry")

    def append(
        self, name: str, template: PromptTemplate, author: str, message: str, at: float
    ) -> PromptVersion:
        payload = json.dumps(template.to_dict(), ensure_ascii=False)
        with self.db.transaction() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM prompt_versions WHERE name = ?", (name,)
            ).fetchone()
            version = PromptVersion(name, last + 1, template, template.content_hash, author, message, at)
            db.execute(
                f"INSERT INTO prompt_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, version.version, payload, version.content_hash, author, message, at),
            )
        return version

    def get(self, name: str, version: int) -> PromptVersion | None:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
        )
        return _version(rows[0]) if rows else None

    def versions(self, name: str) -> Sequence[PromptVersion]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM prompt_versions WHERE name = ? ORDER BY version", (name,)
        )
        return [_version(r) for r in rows]

    def names(self) -> Sequence[str]:
        return [r[0] for r in self.db.query("SELECT DISTINCT name FROM prompt_versions ORDER BY name")]

    def set_label(
        self, name: str, label: str, version: int, actor: str, reason: str, at: float
    ) -> LabelEvent:
        with self.db.transaction() as db:
            exists = db.execute(
                "SELECT 1 FROM prompt_versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if exists is None:
                raise NotFoundError(f"prompt {name!r} has no version {version}")
            row = db.execute(
                "SELECT version FROM prompt_labels WHERE name = ? AND label = ?", (name, label)
            ).fetchone()
            previous = None if row is None else int(row[0])
            db.execute(
                "INSERT INTO prompt_labels (name, label, version) VALUES (?, ?, ?) "
                "ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
                (name, label, version),
            )
            db.execute(
                "INSERT INTO prompt_label_events (name, label, version, previous, actor, reason, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, label, version, previous, actor, reason, at),
            )
        return LabelEvent(name, label, version, previous, actor, reason, at)

    def labels(self, name: str) -> dict[str, int]:
        rows = self.db.query(
            "SELECT label, version FROM prompt_labels WHERE name = ? ORDER BY label", (name,)
        )
        return {label: int(version) for label, version in rows}

    def label_events(self, name: str, label: str | None = None) -> Sequence[LabelEvent]:
        sql = (
            "SELECT name, label, version, previous, actor, reason, at FROM prompt_label_events WHERE name = ?"
        )
        params: tuple[str, ...] = (name,)
        if label is not None:
            sql += " AND label = ?"
            params = (name, label)
        return [LabelEvent(*row) for row in self.db.query(sql + " ORDER BY id", params)]

    def close(self) -> None:
        self.db.close()
