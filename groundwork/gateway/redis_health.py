"""Router cooldowns in Redis, shared by every replica (``router.health_state: redis``).

Times cross the :class:`~groundwork.gateway.policy.HealthState` seam on the router's clock (``now``);
they are kept in Redis as wall-clock times (replicas' monotonic clocks differ), one key per deployment
that expires when its cooldown ends. A Redis outage while serving degrades to per-replica cooldowns: the
error is logged once, counted in ``errors`` and listed by ``problems()`` (``/readyz`` shows it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from groundwork.stores.redis_client import connect, describe_url

logger = logging.getLogger("groundwork.gateway")


class RedisHealthState:
    """A :class:`HealthState` in Redis: one key per deployment, expiring when its cooldown ends."""

    def __init__(
        self,
        url: str,
        prefix: str = "groundwork:cooldown:",
        wall_clock: Callable[[], float] = time.time,
        client: redis.Redis | None = None,
        pause_s: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.wall_clock = wall_clock
        self.client = client or connect(url, "router.health_state: redis, or set router.health_state: memory")
        self.pause_s = pause_s
        """After a failure, the request path leaves Redis alone this long (a dead server costs nothing)."""
        self.errors = 0
        self._failing = False
        self._paused_until = 0.0

    def _paused(self) -> bool:
        return self._failing and time.monotonic() < self._paused_until

    def _failed(self, exc: redis.RedisError) -> None:
        self.errors += 1
        self._paused_until = time.monotonic() + self.pause_s
        if not self._failing:
            logger.warning(
                "Redis at %s failed (%s): router cooldowns are per replica until it is back",
                describe_url(self.url),
                exc,
            )
        self._failing = True

    def get(self, key: str, now: float) -> float:
        if self._paused():
            return 0.0
        try:
            value = self.client.get(self.prefix + key)
        except redis.RedisError as exc:
            self._failed(exc)
            return 0.0
        self._failing = False
        if value is None:
            return 0.0
        remaining = float(value) - self.wall_clock()
        return now + remaining if remaining > 0 else 0.0

    def put(self, key: str, until: float, now: float) -> None:
        if self._paused():
            return
        try:
            if until > now:
                ends = self.wall_clock() + (until - now)
                self.client.set(self.prefix + key, repr(ends), px=max(1, int((until - now) * 1000)))
            else:
                self.client.delete(self.prefix + key)
        except redis.RedisError as exc:
            self._failed(exc)
            return
        self._failing = False

    def problems(self) -> list[str]:
        """Why the shared state is not in use right now (empty when it is); pings Redis."""
        try:
            self.client.ping()
            self._failing = False
        except redis.RedisError as exc:
            self._failed(exc)
        if self._failing:
            return [f"Redis at {describe_url(self.url)} is failing: router cooldowns are per replica"]
        return []
