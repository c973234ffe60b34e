"""Both rate limit backends pass the same conformance suite; the pure GCRA policy on its own."""

from __future__ import annotations

import math
import socket

import pytest

from groundwork.security.ratelimit import CounterStore, MemoryCounterStore, gcra
from groundwork.security.redis_counters import RedisCounterStore
from groundwork.testing.counters import CounterStoreSuite
from tests.conftest import require

REDIS_URL = "redis://127.0.0.1:6379"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


class TestMemoryCounterStore(CounterStoreSuite):
    def make_store(self) -> CounterStore:
        return MemoryCounterStore()


@pytest.mark.integration
class TestRedisCounterStore(CounterStoreSuite):
    def make_store(self) -> CounterStore:
        require(_redis_up(), f"Redis is not reachable at {REDIS_URL}")
        return RedisCounterStore(REDIS_URL, prefix="gw:test:")


def test_gcra_is_pure_and_exact() -> None:
    tat = None
    admitted = 0
    for _ in range(10):
        new, decision = gcra(tat, 100.0, 1, 4, 60.0)
        if new is not None:
            tat = new
        admitted += decision.allowed
    assert admitted == 4
    # one token refills every 15 s
    _, later = gcra(tat, 114.0, 1, 4, 60.0)
    assert not later.allowed and math.isclose(later.retry_after, 1.0)
    _, refilled = gcra(tat, 115.0, 1, 4, 60.0)
    assert refilled.allowed and refilled.remaining == 0


def test_gcra_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="invalid limit"):
        gcra(None, 0.0, 1, 0, 60.0)


def test_memory_store_is_a_counter_store() -> None:
    assert isinstance(MemoryCounterStore(), CounterStore)
    assert isinstance(RedisCounterStore(REDIS_URL), CounterStore)
