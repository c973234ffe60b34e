"""Connecting to Redis with the errors Groundwork promises: unreachable at start names the server and the fix.

Shared by the Redis-backed parts (router health today; the cache and the rate limiter can use the same).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


def client_for(url: str, timeout_s: float) -> redis.Redis:
    """A client that fails fast: ``timeout_s`` per operation and no retries.

    redis-py's default retries with up to 10 s of backoff; a caller on a request path must rather
    degrade at once (the callers here decide what to do without Redis).
    """
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


def connect(url: str, purpose: str, timeout_s: float = 0.5) -> redis.Redis:
    """A fail-fast client for ``url``, checked with ``PING``; raises :class:`ServiceUnavailableError`.

    ``purpose`` says which setting needs Redis (``"router.health_state: redis"``), so the message can tell
    the operator what to switch off instead.
    """
    try:
        client = client_for(url, timeout_s)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise unreachable(url, purpose, exc) from exc
    return client


def redis_problem(url: str, timeout_s: float = 0.5) -> str | None:
    """``None`` when Redis at ``url`` answers ``PING``, else what is wrong (for ``/readyz``)."""
    client = client_for(url, timeout_s)
    try:
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        return f"Redis at {describe_url(url)} does not answer: {exc}"
    finally:
        client.close()
    return None
