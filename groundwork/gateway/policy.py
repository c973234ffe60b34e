"""Pure policy for the router, no I/O: retry backoff, peak-EWMA latency, deployment health.

Time is passed in (``now``) so tests drive these with a fake clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

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


class Health:
    """Circuit breaker of one deployment: healthy -> cooling down -> half-open (one probe) -> healthy.

    ``allowed_fails`` consecutive retryable failures start a cooldown of ``cooldown_s``; a rate limit or an
    authentication failure starts one at once (for ``Retry-After`` when given). When a cooldown ends, one
    request is let through as a probe; its success closes the breaker, its failure reopens it.
    """

    __slots__ = ("allowed_fails", "cooldown_s", "cooldown_until", "cooldowns", "failures", "probing")

    def __init__(self, allowed_fails: int = 3, cooldown_s: float = 30.0) -> None:
        self.allowed_fails = allowed_fails
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.cooldown_until = 0.0
        self.probing = False
        self.cooldowns = 0

    def state(self, now: float) -> str:
        if now < self.cooldown_until:
            return "cooling_down"
        if self.cooldown_until > 0:
            return "half_open"
        return "healthy"

    def available(self, now: float) -> bool:
        state = self.state(now)
        return state == "healthy" or (state == "half_open" and not self.probing)

    def begin(self, now: float) -> None:
        """A request starts on this deployment; in half-open state it is the probe."""
        if self.state(now) == "half_open":
            self.probing = True

    def success(self) -> None:
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
            return True
        return False
