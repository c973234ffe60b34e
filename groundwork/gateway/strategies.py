"""Load-balancing strategies: pick one deployment among the available ones.

Each is a small class with one method, registered by name in :data:`STRATEGIES`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from groundwork.gateway.deployment import DeploymentState


class Strategy(Protocol):
    def pick(self, candidates: Sequence[DeploymentState], streaming: bool) -> DeploymentState: ...


class RoundRobin:
    """Each deployment in turn."""

    def __init__(self, rng: random.Random) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[DeploymentState], streaming: bool) -> DeploymentState:
        choice = candidates[self._next % len(candidates)]
        self._next += 1
        return choice


class Weighted:
    """Smooth weighted round-robin (as nginx does): exact proportions, no bursts to one deployment."""

    def __init__(self, rng: random.Random) -> None:
        self._current: dict[int, float] = {}

    def pick(self, candidates: Sequence[DeploymentState], streaming: bool) -> DeploymentState:
        total = 0.0
        best: DeploymentState | None = None
        for d in candidates:
            w = d.config.weight
            total += w
            self._current[id(d)] = self._current.get(id(d), 0.0) + w
            if best is None or self._current[id(d)] > self._current[id(best)]:
                best = d
        assert best is not None
        self._current[id(best)] -= total
        return best


class LeastLoaded:
    """Fewest in-flight requests; ties broken in turn."""

    def __init__(self, rng: random.Random) -> None:
        self._tie = 0

    def pick(self, candidates: Sequence[DeploymentState], streaming: bool) -> DeploymentState:
        low = min(d.in_flight for d in candidates)
        tied = [d for d in candidates if d.in_flight == low]
        choice = tied[self._tie % len(tied)]
        self._tie += 1
        return choice


class Latency:
    """Power of two choices over a peak-EWMA cost: ``latency x (in_flight + 1)``.

    Streams are scored by time to first token, other calls by total latency. A deployment never
    measured scores 0, so each is tried early.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    @staticmethod
    def cost(d: DeploymentState, streaming: bool) -> float:
        primary, other = (d.ttft, d.latency) if streaming else (d.latency, d.ttft)
        ewma = primary if primary.observed else other
        return ewma.value * (d.in_flight + 1)

    def pick(self, candidates: Sequence[DeploymentState], streaming: bool) -> DeploymentState:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(list(candidates), 2)
        return a if self.cost(a, streaming) <= self.cost(b, streaming) else b


STRATEGIES: dict[str, Callable[[random.Random], Strategy]] = {
    "round_robin": RoundRobin,
    "weighted": Weighted,
    "least_loaded": LeastLoaded,
    "latency": Latency,
}
