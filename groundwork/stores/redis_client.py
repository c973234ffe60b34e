"""Connecting to Redis with the errors Groundwork promises: unreachable at start names the server and the fix.

Shared by the Redis-backed parts (router health today; the cache and the rate limiter can use the same).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis

from groundwork.errors import ServiceUnavailableError


def describe_url(url: str) -> str:
    """``redis://host:port/db`` without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme or 'redis'}://{host}:{port}{parts.path or ''}"


def unreachable(url: str, purpose: str, exc: BaseException) -> ServiceUnavailableError:
    """The error for a Redis that cannot be reached, naming it, what needed it, and the fix."""
    return ServiceUnavailableError(
        f"cannot reach Redis at {describe_url(url)} ({purpose}): {exc}. Start Redis there or fix redis_url"
        " (env GROUNDWORK_REDIS_URL)",
        details={"service": "redis", "server": describe_url(url)},
    )


def connect(url: str, purpose: str, timeout_s: float = 2.0) -> redis.Redis:
    """A client for ``url``, checked with ``PING``; raises :class:`ServiceUnavailableError` naming the fix.

    ``purpose`` says which setting needs Redis (``"router.health_state: redis"``), so the message can tell
    the operator what to switch off instead.
    """
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise unreachable(url, purpose, exc) from exc
    return client
