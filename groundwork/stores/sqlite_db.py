"""One SQLite file with ordered migrations: the embedded storage every subsystem builds on.

Each subsystem (documents, prompts, keys and audit, traces, cache) keeps its tables in its own file
under the data dir, with its own list of migrations, so they migrate and lock independently. The number
of migrations applied is recorded in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groundwork.errors import StorageError

Migration = Callable[[sqlite3.Connection], None]


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements one by one (``executescript`` would COMMIT half-way)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


class SQLiteDatabase:
    """A thread-safe connection to one SQLite file in WAL mode, migrated on open.

    ``transaction()`` holds the lock and an ``IMMEDIATE`` transaction; ``query``/``execute`` run one
    statement under the lock in autocommit mode.
    """

    def __init__(self, path: Path, migrations: Sequence[Migration], *, what: str = "database") -> None:
        self.path = Path(path)
        self.what = what
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        try:
            self.connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=NORMAL")
            self.connection.execute("PRAGMA foreign_keys=ON")
            self.connection.execute("PRAGMA busy_timeout=5000")
            self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot open the {what} {self.path}: {exc}") from exc

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        (version,) = self.connection.execute("PRAGMA user_version").fetchone()
        if version > len(migrations):
            raise StorageError(
                f"the {self.what} {self.path} has schema version {version}, newer than this Groundwork "
                f"knows ({len(migrations)}); upgrade Groundwork"
            )
        for number, migration in enumerate(migrations[version:], start=version + 1):
            with self.transaction() as db:
                migration(db)
                db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An ``IMMEDIATE`` transaction: committed when the block ends, rolled back if it raises."""
        with self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of one statement."""
        with self.lock:
            return self.connection.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the number of rows changed."""
        with self.lock:
            return self.connection.execute(sql, params).rowcount

    def close(self) -> None:
        with self.lock:
            self.connection.close()
