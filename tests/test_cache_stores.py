"""Both cache backends pass the same conformance suite (groundwork.testing.cache)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.cache.redis import RedisCacheStore
from groundwork.cache.sqlite import SQLiteCacheStore
from groundwork.errors import StorageError
from groundwork.testing.cache import MAX_ENTRIES, CacheStoreSuite
from tests.conftest import require

REDIS_URL = "redis://127.0.0.1:6379"


class TestSQLiteCacheStore(CacheStoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteCacheStore]:
        s = SQLiteCacheStore(tmp_path / "cache.sqlite3", max_entries=MAX_ENTRIES)
        yield s
        s.close()

    def test_entries_survive_reopening(self, tmp_path: Path) -> None:
        s = SQLiteCacheStore(tmp_path / "c.sqlite3", max_entries=MAX_ENTRIES)
        s.put("k", b"v", ttl_s=60)
        s.close()
        again = SQLiteCacheStore(tmp_path / "c.sqlite3", max_entries=MAX_ENTRIES)
        assert again.get("k") == b"v"
        again.close()


def _redis_or_skip() -> RedisCacheStore:
    probe = RedisCacheStore(REDIS_URL, prefix=f"gw:test:{uuid.uuid4().hex}:", max_entries=MAX_ENTRIES)
    try:
        probe.ping()
    except StorageError as exc:
        probe.close()
        require(False, f"Redis is not reachable at {REDIS_URL}: {exc}")
    return probe


class TestRedisCacheStore(CacheStoreSuite):
    @pytest.fixture
    def store(self) -> Iterator[RedisCacheStore]:
        s = _redis_or_skip()
        yield s
        s.clear()
        s.close()

    def test_prefixes_isolate_stores(self) -> None:
        a, b = _redis_or_skip(), _redis_or_skip()
        try:
            a.put("k", b"from a", ttl_s=60)
            assert b.get("k") is None
            b.clear()
            assert a.get("k") == b"from a"
        finally:
            a.clear()
            a.close()
            b.close()

    def test_two_processes_see_each_others_vectors(self) -> None:
        import numpy as np

        a = _redis_or_skip()
        b = RedisCacheStore(REDIS_URL, prefix=a.prefix, max_entries=MAX_ENTRIES)
        try:
            a.put("k1", b"1", ttl_s=60, bucket="q", vector=np.ones(4, dtype=np.float32) / 2)
            assert b.vectors("q")[0] == ["k1"]  # b reads, and keeps, the bucket
            a.put("k2", b"2", ttl_s=60, bucket="q", vector=np.ones(4, dtype=np.float32) / 2)
            assert b.vectors("q")[0] == ["k1", "k2"]  # the version changed: b reads it again
            a.delete("k1")
            assert b.vectors("q")[0] == ["k2"]
        finally:
            a.clear()
            a.close()
            b.close()


def test_dead_redis_raises_storage_error() -> None:
    store = RedisCacheStore("redis://127.0.0.1:1", max_entries=5, timeout_s=0.2)
    with pytest.raises(StorageError, match="Redis"):
        store.get("k")
