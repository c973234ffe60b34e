"""Exact rate limits: a pure GCRA token bucket (:func:`gcra`) over a :class:`CounterStore`.

The policy is the generic cell rate algorithm, a token bucket written as one number per key, the
*theoretical arrival time* (TAT). A bucket of ``limit`` tokens refills at ``limit / period`` tokens a
second, so a burst of ``limit`` is admitted at once and then one more every ``period / limit``
seconds: ``N`` simultaneous requests over a limit of ``L`` admit exactly ``L``. Because the state is
one number, a backend makes the check-and-update atomic cheaply: :class:`MemoryCounterStore` under a
lock, :class:`~groundwork.security.redis_counters.RedisCounterStore` in one Lua script.

The same stores cap concurrent requests (:meth:`CounterStore.enter` / :meth:`CounterStore.leave`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one check: admitted or not, and what the ``x-ratelimit-*`` headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    """Seconds until the bucket is full again."""
    retry_after: float = 0.0
    """Seconds until this request would be admitted (0 when admitted)."""


def gcra(
    tat: float | None, now: float, cost: int, limit: int, period: float
) -> tuple[float | None, RateDecision]:
    """One GCRA step: the new TAT (``None``: unchanged) and the decision for ``cost`` tokens.

    Pure: no clock, no I/O. ``limit`` tokens refill over ``period`` seconds; a bucket starts full.
    A ``cost`` larger than ``limit`` can never be admitted and is denied with ``retry_after = inf``.
    """
    if limit < 1 or period <= 0 or cost < 0:
        raise ValueError(f"invalid limit {limit}, period {period} or cost {cost}")
    interval = period / limit
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - period
    if cost > limit:
        remaining = _remaining(base, now, period, interval)
        return None, RateDecision(False, limit, remaining, max(base - now, 0.0), math.inf)
    if allow_at > now + 1e-9:
        remaining = _remaining(base, now, period, interval)
        return None, RateDecision(False, limit, remaining, max(base - now, 0.0), allow_at - now)
    remaining = _remaining(new_tat, now, period, interval)
    return new_tat, RateDecision(True, limit, remaining, new_tat - now)


def _remaining(tat: float, now: float, period: float, interval: float) -> int:
    return max(0, math.floor((period - (tat - now)) / interval + 1e-9))


@runtime_checkable
class CounterStore(Protocol):
    """Atomic counters for rate limits; every backend passes ``groundwork.testing.counters``."""

    async def hit(self, key: str, cost: int, limit: int, period: float) -> RateDecision:
        """Take ``cost`` tokens from ``key``'s bucket (``limit`` per ``period`` seconds) if it holds them."""
        ...

    async def enter(self, key: str, limit: int, ttl: float) -> bool:
        """Count one more in-flight request on ``key`` unless ``limit`` are already in flight.

        ``ttl`` bounds how long a count survives a process that died before :meth:`leave`.
        """
        ...

    async def leave(self, key: str) -> None:
        """One in-flight request on ``key`` ended."""
        ...

    async def aclose(self) -> None:
        """Release connections (no-op for in-process stores)."""
        ...


class MemoryCounterStore:
    """The embedded backend: buckets and in-flight counts in this process, exact under one lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._inflight: dict[str, int] = {}
        self._lock = threading.Lock()  # held for no await: safe across event loops and threads
        self._max_keys = max_keys

    async def hit(self, key: str, cost: int, limit: int, period: float) -> RateDecision:
        with self._lock:
            now = self._clock()
            new_tat, decision = gcra(self._tats.get(key), now, cost, limit, period)
            if new_tat is not None:
                if len(self._tats) >= self._max_keys:
                    self._evict(now)
                self._tats[key] = new_tat
            return decision

    def _evict(self, now: float) -> None:
        """Forget buckets that are full again (a full bucket and a missing one behave the same)."""
        for k in [k for k, t in self._tats.items() if t <= now]:
            del self._tats[k]

    async def enter(self, key: str, limit: int, ttl: float) -> bool:
        with self._lock:
            n = self._inflight.get(key, 0)
            if n >= limit:
                return False
            self._inflight[key] = n + 1
            return True

    async def leave(self, key: str) -> None:
        with self._lock:
            n = self._inflight.get(key, 0) - 1
            if n > 0:
                self._inflight[key] = n
            else:
                self._inflight.pop(key, None)

    async def aclose(self) -> None:
        return None
