"""The shared cache store on Redis (``cache.backend: redis``, at the top-level ``redis_url``).

Keys, under the configured prefix ``P``: ``P e:<key>`` the entry (with Redis' own expiry), ``P lru`` a
sorted set of keys by last use, ``P v:<bucket>`` a hash of key -> vector, ``P vv:<bucket>`` a random
version of that hash (changed with it), ``P b`` a hash of key -> bucket (to drop a vector when its entry
is evicted). A process keeps the vectors of a bucket it read with their version, so a semantic lookup
reads one short string unless the bucket changed. Redis' errors become
:class:`~groundwork.errors.StorageError` here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from groundwork.cache.store import FloatArray, empty_vectors, stack, to_bytes
from groundwork.errors import StorageError


class RedisCacheStore:
    """A :class:`~groundwork.cache.store.CacheStore` on Redis, shared by every gateway process."""

    def __init__(
        self,
        url: str,
        prefix: str = "gw:cache:",
        max_entries: int = 10_000,
        *,
        timeout_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.max_entries = max_entries
        self.clock = clock
        self.client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._mirror: dict[str, tuple[bytes, tuple[list[str], FloatArray]]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise StorageError(f"response cache {what} failed on Redis {self.url}: {exc}") from exc

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}{name}"

    def get(self, key: str) -> bytes | None:
        with self._errors("read"):
            value = self.client.get(self._k("e:", key))
            if value is None:
                return None
            self.client.zadd(self._k("lru"), {key: self.clock()})
        return bytes(value)  # type: ignore[arg-type]

    def put(
        self,
        key: str,
        value: bytes,
        ttl_s: float,
        bucket: str | None = None,
        vector: FloatArray | None = None,
    ) -> None:
        with self._errors("write"):
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self._k("e:", key), value, px=max(1, int(ttl_s * 1000)))
            pipe.zadd(self._k("lru"), {key: self.clock()})
            if bucket is not None and vector is not None:
                pipe.hset(self._k("v:", bucket), key, to_bytes(vector))
                pipe.hset(self._k("b"), key, bucket)
                pipe.set(self._k("vv:", bucket), os.urandom(8))
            pipe.zcard(self._k("lru"))
            count = pipe.execute()[-1]
            if count > self.max_entries:
                self._evict(int(count) - self.max_entries)

    def _evict(self, n: int) -> None:
        popped: list[tuple[bytes | str, float]] = self.client.zpopmin(self._k("lru"), n)  # type: ignore[assignment]
        for member, _ in popped:
            self._drop(member.decode() if isinstance(member, bytes) else str(member))

    def _drop(self, key: str) -> None:
        bucket = self.client.hget(self._k("b"), key)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self._k("e:", key))
        pipe.zrem(self._k("lru"), key)
        pipe.hdel(self._k("b"), key)
        if bucket is not None:
            name = bucket.decode()  # type: ignore[union-attr]
            pipe.hdel(self._k("v:", name), key)
            pipe.set(self._k("vv:", name), os.urandom(8))
        pipe.execute()

    def delete(self, key: str) -> None:
        with self._errors("delete"):
            self._drop(key)

    def vectors(self, bucket: str) -> tuple[list[str], FloatArray]:
        with self._errors("read"):
            version = self.client.get(self._k("vv:", bucket))
            if version is None:
                return empty_vectors()
            with self._lock:
                known = self._mirror.get(bucket)
            if known is not None and known[0] == version:
                return known[1]
            pipe = self.client.pipeline(transaction=True)
            pipe.get(self._k("vv:", bucket))
            pipe.hgetall(self._k("v:", bucket))
            version, raw = pipe.execute()
        items: list[tuple[bytes, bytes]] = sorted(raw.items())
        result = (
            stack([k.decode() for k, _ in items], [bytes(v) for _, v in items]) if items else empty_vectors()
        )
        with self._lock:
            if len(self._mirror) >= 1024:
                self._mirror.clear()
            if version is not None:
                self._mirror[bucket] = (bytes(version), result)  # type: ignore[arg-type]
        return result

    def clear(self) -> None:
        with self._errors("clear"):
            keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                self.client.delete(*keys[i : i + 500])
        with self._lock:
            self._mirror.clear()

    def __len__(self) -> int:
        with self._errors("read"):
            return int(self.client.zcard(self._k("lru")))  # type: ignore[arg-type]

    def ping(self) -> None:
        """Raise :class:`StorageError` when Redis cannot be reached."""
        with self._errors("ping"):
            self.client.ping()

    def close(self) -> None:
        self.client.close()
