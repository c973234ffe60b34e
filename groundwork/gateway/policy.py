"""Pure policy for the router, no I/O: retry backoff, peak-EWMA latency, deployment health.

Time is passed in (``now``) so tests drive these with a fake clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from groundwork.errors import AuthError, GroundworkError, RateLimitError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``."""

    num_retries: int = 2
    base_s: float = 0.05
    max_s: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None, rand: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based) on the same deployment set.

        Full jitter: uniform in ``[0, min(max_s, base_s * 2**attempt)]``; never less than ``retry_after``.
        """
        cap = min(self.max_s, self.base_s * 2.0**attempt)
        r = random.random() if rand is None else rand
        wait = cap * r
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait

    @staticmethod
    def retryable(error: GroundworkError) -> bool:
        """Only what the taxonomy marks retryable is retried (never a bad request)."""
        return error.retryable


class PeakEwma:
    """Peak-sensitive moving average of latency (Finagle's PeakEWMA).

    A slower observation replaces the average at once; faster ones pull it down with a time-based decay
    (``tau`` seconds), so a deployment that turns slow is avoided immediately and recovers gradually.
    """

    __slots__ = ("_last", "tau", "value")

    def __init__(self, tau: float = 10.0) -> None:
        self.tau = tau
        self.value = 0.0
        self._last: float | None = None

    def observe(self, seconds: float, now: float) -> None:
        if self._last is None or seconds > self.value:
            self.value = seconds
        else:
            w = math.exp(-max(0.0, now - self._last) / self.tau)
            self.value = self.value * w + seconds * (1 - w)
        self._last = now

    @property
    def observed(self) -> bool:
        return self._last is not None


@runtime_checkable
class HealthState(Protocol):
    """Where cooldown ends are shared, by deployment key, on the caller's clock (``now``).

    Implementations: :mod:`groundwork.gateway.health_state` (in process, Redis).
    """

    def get(self, key: str, now: float) -> float:
        """When ``key``'s cooldown ends (``0.0``: none)."""

    def put(self, key: str, until: float, now: float) -> None:
        """Record that ``key`` cools down until ``until`` (``0.0`` clears it)."""


class Health:
    """Circuit breaker of one deployment: healthy -> cooling down -> half-open (one probe) -> healthy.

    ``allowed_fails`` consecutive retryable failures start a cooldown of ``cooldown_s``; a rate limit or an
    authentication failure starts one at once (for ``Retry-After`` when given). When a cooldown ends, one
    request is let through as a probe; its success closes the breaker, its failure reopens it.

    With a ``shared`` :class:`HealthState` (e.g. Redis), a cooldown this breaker starts is published under
    ``key`` and one started elsewhere is adopted: :meth:`available` reads the shared state at most once per
    ``sync_interval_s``, so the hot path stays in memory. Failure counts stay per process.
    """

    __slots__ = (
        "_synced_at",
        "allowed_fails",
        "cooldown_s",
        "cooldown_until",
        "cooldowns",
        "failures",
        "key",
        "probing",
        "shared",
        "sync_interval_s",
    )

    def __init__(
        self,
        allowed_fails: int = 3,
        cooldown_s: float = 30.0,
        shared: HealthState | None = None,
        key: str = "",
        sync_interval_s: float = 1.0,
    ) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.cooldown_until = 0.0
        self.probing = False
        self.cooldowns = 0
        self.shared = shared
        self.key = key
        self.sync_interval_s = sync_interval_s
        self._synced_at = -math.inf

    def sync(self, now: float) -> None:
        """Adopt a later cooldown end from the shared state (at most once per ``sync_interval_s``)."""
        if self.shared is None or now - self._synced_at < self.sync_interval_s:
            return
        self._synced_at = now
        until = self.shared.get(self.key, now)
        if until > max(self.cooldown_until, now):  # another replica found this deployment failing
            self.cooldown_until = until
            self.probing = False
            self.failures = 0

    def state(self, now: float) -> str:
        if now < self.cooldown_until:
            return "cooling_down"
        if self.cooldown_until > 0:
            return "half_open"
        return "healthy"

    def available(self, now: float) -> bool:
        self.sync(now)
        state = self.state(now)
        return state == "healthy" or (state == "half_open" and not self.probing)

    def begin(self, now: float) -> None:
        """A request starts on this deployment; in half-open state it is the probe."""
        if self.state(now) == "half_open":
            self.probing = True

    def success(self) -> None:
        if self.cooldown_until > 0 and self.shared is not None:  # a probe succeeded: clear it everywhere
            self.shared.put(self.key, 0.0, 0.0)
        self.failures = 0
        self.cooldown_until = 0.0
        self.probing = False

    def failure(self, error: GroundworkError, now: float) -> bool:
        """Record a failure; returns ``True`` when it starts a cooldown."""
        was_probe = self.probing
        self.probing = False
        self.failures += 1
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, RateLimitError | AuthError) or was_probe or self.failures >= self.allowed_fails:
            seconds = (
                retry_after if isinstance(retry_after, int | float) and retry_after > 0 else self.cooldown_s
            )
            self.cooldown_until = now + seconds
            self.failures = 0
            self.cooldowns += 1
            if self.shared is not None:
                self.shared.put(self.key, self.cooldown_until, now)
            return True
        return False
