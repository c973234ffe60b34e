"""Runtime state of one deployment: its model, load, latency, health and request/token budgets."""

from __future__ import annotations

from collections import deque

from groundwork.config import Deployment
from groundwork.gateway.policy import Health, PeakEwma
from groundwork.models.base import ChatModel
from groundwork.types import Usage

_WINDOW_S = 60.0


class DeploymentState:
    """A deployment the router can pick: ``config`` plus live counters."""

    def __init__(self, config: Deployment, model: ChatModel, health: Health) -> None:
        self.config = config
        self.model = model
        self.health = health
        self.name = config.name
        self.in_flight = 0
        self.latency = PeakEwma()
        self.ttft = PeakEwma()
        self.requests = 0
        self.failures = 0
        self._request_times: deque[float] = deque()
        self._token_times: deque[tuple[float, int]] = deque()
        self._tokens_in_window = 0

    def _expire(self, now: float) -> None:
        while self._request_times and self._request_times[0] <= now - _WINDOW_S:
            self._request_times.popleft()
        while self._token_times and self._token_times[0][0] <= now - _WINDOW_S:
            self._tokens_in_window -= self._token_times.popleft()[1]

    def has_capacity(self, now: float) -> bool:
        """Under its concurrency cap and its requests/tokens per minute."""
        c = self.config
        if c.max_concurrency is not None and self.in_flight >= c.max_concurrency:
            return False
        if c.rpm is None and c.tpm is None:
            return True
        self._expire(now)
        if c.rpm is not None and len(self._request_times) >= c.rpm:
            return False
        return not (c.tpm is not None and self._tokens_in_window >= c.tpm)

    def start(self, now: float) -> None:
        self.in_flight += 1
        self.requests += 1
        self.health.begin(now)
        if self.config.rpm is not None:
            self._request_times.append(now)

    def finish(self) -> None:
        self.in_flight -= 1

    def count_tokens(self, usage: Usage, now: float) -> None:
        if self.config.tpm is not None:
            self._token_times.append((now, usage.total_tokens))
            self._tokens_in_window += usage.total_tokens

    def priced(self, usage: Usage) -> Usage:
        """``usage`` with its cost from this deployment's per-token prices."""
        c = self.config
        cost = (
            usage.prompt_tokens * c.input_cost_per_token + usage.completion_tokens * c.output_cost_per_token
        )
        return Usage(usage.prompt_tokens, usage.completion_tokens, cost)
