"""The conformance suite of :class:`~groundwork.cache.store.CacheStore`.

A backend's test module subclasses :class:`CacheStoreSuite` and provides a ``store`` fixture that
yields an empty store with ``max_entries=5`` (isolated from other tests: a file of its own, a unique
Redis key prefix)::

    class TestSQLiteCacheStore(CacheStoreSuite):
        @pytest.fixture
        def store(self, tmp_path): ...
"""

from __future__ import annotations

import time

import numpy as np

from groundwork.cache.store import CacheStore

MAX_ENTRIES = 5
"""The ``max_entries`` a ``store`` fixture must be built with."""


def _vec(*values: float) -> np.ndarray:  # type: ignore[type-arg]
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


class CacheStoreSuite:
    """Tests every :class:`CacheStore` passes."""

    def test_is_a_cache_store(self, store: CacheStore) -> None:
        assert isinstance(store, CacheStore)
        assert store.max_entries == MAX_ENTRIES

    def test_get_missing_is_none(self, store: CacheStore) -> None:
        assert store.get("nope") is None
        assert len(store) == 0

    def test_put_get_round_trip_bytes(self, store: CacheStore) -> None:
        value = bytes(range(256)) + "é".encode()
        store.put("k", value, ttl_s=60)
        assert store.get("k") == value
        assert len(store) == 1

    def test_put_replaces(self, store: CacheStore) -> None:
        store.put("k", b"one", ttl_s=60)
        store.put("k", b"two", ttl_s=60)
        assert store.get("k") == b"two"
        assert len(store) == 1

    def test_delete(self, store: CacheStore) -> None:
        store.put("k", b"v", ttl_s=60, bucket="b", vector=_vec(1, 0, 0))
        store.delete("k")
        store.delete("never-there")
        assert store.get("k") is None
        assert store.vectors("b")[0] == []

    def test_ttl_expires_entries(self, store: CacheStore) -> None:
        store.put("short", b"v", ttl_s=0.15)
        store.put("long", b"v", ttl_s=60)
        assert store.get("short") == b"v"
        time.sleep(0.3)
        assert store.get("short") is None
        assert store.get("long") == b"v"

    def test_lru_bound_evicts_least_recently_used(self, store: CacheStore) -> None:
        for i in range(MAX_ENTRIES):
            store.put(f"k{i}", b"v", ttl_s=60)
            time.sleep(0.002)  # distinct use times
        assert store.get("k0") == b"v"  # k0 is now the most recently used; k1 the least
        time.sleep(0.002)
        store.put("new", b"v", ttl_s=60)
        assert len(store) == MAX_ENTRIES
        assert store.get("k1") is None
        assert store.get("k0") == b"v"
        assert store.get("new") == b"v"

    def test_size_never_exceeds_bound(self, store: CacheStore) -> None:
        for i in range(3 * MAX_ENTRIES):
            store.put(f"k{i}", b"v", ttl_s=60, bucket="b", vector=_vec(1, i, 0))
        assert len(store) == MAX_ENTRIES
        keys, matrix = store.vectors("b")
        assert sorted(keys) == sorted(f"k{i}" for i in range(2 * MAX_ENTRIES, 3 * MAX_ENTRIES))
        assert matrix.shape == (MAX_ENTRIES, 3)

    def test_vectors_by_bucket(self, store: CacheStore) -> None:
        store.put("a", b"1", ttl_s=60, bucket="b1", vector=_vec(1, 0, 0))
        store.put("b", b"2", ttl_s=60, bucket="b1", vector=_vec(0, 1, 0))
        store.put("c", b"3", ttl_s=60, bucket="b2", vector=_vec(0, 0, 1))
        store.put("d", b"4", ttl_s=60)
        keys, matrix = store.vectors("b1")
        rows = dict(zip(keys, matrix, strict=True))
        assert sorted(rows) == ["a", "b"]
        assert matrix.dtype == np.float32
        np.testing.assert_allclose(rows["b"], _vec(0, 1, 0))
        assert store.vectors("b2")[0] == ["c"]
        assert store.vectors("nothing")[0] == []

    def test_vectors_see_new_entries(self, store: CacheStore) -> None:
        store.put("a", b"1", ttl_s=60, bucket="b", vector=_vec(1, 0))
        assert store.vectors("b")[0] == ["a"]
        store.put("b", b"2", ttl_s=60, bucket="b", vector=_vec(0, 1))
        assert sorted(store.vectors("b")[0]) == ["a", "b"]

    def test_clear(self, store: CacheStore) -> None:
        store.put("a", b"1", ttl_s=60, bucket="b", vector=_vec(1, 0))
        store.clear()
        assert len(store) == 0
        assert store.get("a") is None
        assert store.vectors("b")[0] == []
