"""Where deployments' cooldowns live: in this process here; in Redis (:mod:`.redis_health`) for replicas.

:class:`~groundwork.gateway.policy.Health` decides (pure); a :class:`HealthState` remembers when a
deployment's cooldown ends so that every replica skips a deployment one of them found failing. The hot
path stays in memory: :class:`Health` reads the shared state at most once per ``sync_interval_s`` per
deployment, and writes only when a cooldown starts or ends.

Times cross the seam on the router's clock (``now``); the Redis one converts to wall-clock
time for Redis (replicas' monotonic clocks differ) and back. A Redis outage while serving degrades to
per-replica cooldowns: the error is logged once, counted in ``errors`` and listed by ``problems()``.
"""

from __future__ import annotations

from groundwork.gateway.policy import HealthState

__all__ = ["HealthState", "MemoryHealthState"]


class MemoryHealthState:
    """The in-process :class:`HealthState` (the default; each replica has its own)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def get(self, key: str, now: float) -> float:
        return self._until.get(key, 0.0)

    def put(self, key: str, until: float, now: float) -> None:
        if until > 0:
            self._until[key] = until
        else:
            self._until.pop(key, None)
