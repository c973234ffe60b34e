"""The embedded cache store: one SQLite file (``<data_dir>/cache.sqlite3``), the default backend.

Vectors of a bucket are also kept in memory (rebuilt from the file after this process changes the
bucket), so a semantic lookup is one matrix product, not a table scan.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from groundwork.cache.store import FloatArray, empty_vectors, stack, to_bytes
from groundwork.errors import StorageError
from groundwork.stores.sqlite_db import SQLiteDatabase, run_script


def _m1_entries(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE entries (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL,
            bucket TEXT,
            vector BLOB,
            expires_at REAL NOT NULL,
            used_at REAL NOT NULL
        );
        CREATE INDEX entries_used ON entries(used_at);
        CREATE INDEX entries_bucket ON entries(bucket) WHERE bucket IS NOT NULL
        """,
    )


MIGRATIONS = [_m1_entries]


class SQLiteCacheStore:
    """A :class:`~groundwork.cache.store.CacheStore` in one SQLite file."""

    def __init__(self, path: Path, max_entries: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.db = SQLiteDatabase(path, MIGRATIONS, what="response cache")
        self.max_entries = max_entries
        self.clock = clock
        self._buckets: dict[str, tuple[list[str], FloatArray]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        now = self.clock()
        try:
            with self.db.lock:
                row = self.db.connection.execute(
                    "SELECT value, expires_at FROM entries WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    return None
                if row[1] <= now:
                    self._delete(key)
                    return None
                self.db.connection.execute("UPDATE entries SET used_at = ? WHERE key = ?", (now, key))
        except sqlite3.Error as exc:
            raise StorageError(f"response cache read failed: {exc}") from exc
        return bytes(row[0])

    def put(
        self,
        key: str,
        value: bytes,
        ttl_s: float,
        bucket: str | None = None,
        vector: FloatArray | None = None,
    ) -> None:
        now = self.clock()
        blob = to_bytes(vector) if vector is not None else None
        try:
            with self.db.transaction() as db:
                db.execute(
                    "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)",
                    (key, value, bucket, blob, now + ttl_s, now),
                )
                (count,) = db.execute("SELECT COUNT(*) FROM entries").fetchone()
                if count > self.max_entries:
                    db.execute("DELETE FROM entries WHERE expires_at <= ?", (now,))
                    db.execute(
                        "DELETE FROM entries WHERE key IN "
                        "(SELECT key FROM entries ORDER BY used_at, rowid LIMIT max(0, "
                        "(SELECT COUNT(*) FROM entries) - ?))",
                        (self.max_entries,),
                    )
                    self._forget()
        except sqlite3.Error as exc:
            raise StorageError(f"response cache write failed: {exc}") from exc
        if bucket is not None:
            with self._lock:
                self._buckets.pop(bucket, None)

    def _forget(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _delete(self, key: str) -> None:
        self.db.execute("DELETE FROM entries WHERE key = ?", (key,))
        self._forget()

    def delete(self, key: str) -> None:
        try:
            self._delete(key)
        except sqlite3.Error as exc:
            raise StorageError(f"response cache delete failed: {exc}") from exc

    def vectors(self, bucket: str) -> tuple[list[str], FloatArray]:
        with self._lock:
            cached = self._buckets.get(bucket)
        if cached is not None:
            return cached
        try:
            rows = self.db.query(
                "SELECT key, vector FROM entries WHERE bucket = ? AND vector IS NOT NULL AND expires_at > ?",
                (bucket, self.clock()),
            )
        except sqlite3.Error as exc:
            raise StorageError(f"response cache read failed: {exc}") from exc
        result = stack([r[0] for r in rows], [bytes(r[1]) for r in rows]) if rows else empty_vectors()
        with self._lock:
            self._buckets[bucket] = result
        return result

    def clear(self) -> None:
        self.db.execute("DELETE FROM entries")
        self._forget()

    def __len__(self) -> int:
        (count,) = self.db.query("SELECT COUNT(*) FROM entries WHERE expires_at > ?", (self.clock(),))[0]
        return int(count)

    def close(self) -> None:
        self.db.close()
