"""The Redis backend of :class:`~groundwork.security.ratelimit.CounterStore`, for several replicas.

Each check is one Lua script, so the read-decide-write of the GCRA bucket is atomic on the server and
``N`` concurrent requests from any number of replicas over a limit of ``L`` admit exactly ``L``. The
scripts read the time from Redis (``TIME``), so replicas with skewed clocks share one timeline.
"""

from __future__ import annotations

import math
from typing import Any

from groundwork.errors import ServiceUnavailableError, StorageError
from groundwork.security.ratelimit import RateDecision

_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]))
local base = now
if tat and tat > now then base = tat end
local new_tat = base + cost * interval
local allow_at = new_tat - period
if cost > limit or allow_at > now + 1e-9 then
  return {0, string.format('%.6f', base - now), string.format('%.6f', allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return {1, string.format('%.6f', new_tat - now), '0'}
"""

_ENTER = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_LEAVE = """
local n = redis.call('DECR', KEYS[1])
if n <= 0 then redis.call('DEL', KEYS[1]) end
return n
"""


class RedisCounterStore:
    """Buckets and in-flight counts in Redis under ``prefix``; the client is created on first use."""

    def __init__(self, url: str, prefix: str = "gw:rl:", max_connections: int = 32) -> None:
        self.url = url
        self.max_connections = max_connections
        self.prefix = prefix
        self._client: Any = None
        self._scripts: dict[str, Any] = {}

    def _script(self, name: str, source: str) -> Any:
        if self._client is None:
            try:
                import redis.asyncio as aioredis
            except ImportError as exc:  # pragma: no cover - redis is a declared extra
                raise StorageError(
                    "the Redis rate limit backend needs the redis package: pip install 'groundwork[redis]'"
                ) from exc
            # A bounded pool that waits for a free connection rather than failing under a burst.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=10
            )
            self._client = aioredis.Redis(connection_pool=pool)
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(source)
        return script

    async def _run(self, name: str, source: str, key: str, *args: object) -> Any:
        from redis.exceptions import RedisError

        try:
            return await self._script(name, source)(keys=[self.prefix + key], args=list(args))
        except RedisError as exc:
            raise ServiceUnavailableError(
                f"the rate limit store at {self.url} failed: {exc} (is Redis running? see redis_url;"
                " security.rate_limits.on_backend_error: open admits requests while it is down)",
                details={"service": "redis", "server": self.url},
            ) from exc

    async def hit(self, key: str, cost: int, limit: int, period: float) -> RateDecision:
        if limit < 1 or period <= 0 or cost < 0:
            raise ValueError(f"invalid limit {limit}, period {period} or cost {cost}")
        allowed, tat_s, allow_s = await self._run("gcra", _GCRA, key, cost, limit, repr(float(period)))
        interval = period / limit
        tat_rel = float(tat_s)
        remaining = max(0, math.floor((period - tat_rel) / interval + 1e-9))
        if int(allowed):
            return RateDecision(True, limit, remaining, tat_rel)
        retry = math.inf if cost > limit else float(allow_s)
        return RateDecision(False, limit, remaining, max(tat_rel, 0.0), retry)

    async def enter(self, key: str, limit: int, ttl: float) -> bool:
        return bool(await self._run("enter", _ENTER, key, limit, max(1, int(ttl * 1000))))

    async def leave(self, key: str) -> None:
        await self._run("leave", _LEAVE, key)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client, self._scripts = self._client, None, {}
            await client.aclose()
            await client.connection_pool.disconnect()
