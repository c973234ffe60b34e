"""Router policy and strategies with the fakes: distributions, health, backoff (no network)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from groundwork.config import Deployment, RouterSettings
from groundwork.errors import AllAttemptsFailedError, RateLimitError, UpstreamError
from groundwork.gateway import DeploymentState, Health, PeakEwma, RetryPolicy, Router
from groundwork.models.fake import FakeChatModel
from groundwork.types import GenerationOptions, Message, StreamChunk

MSGS = [Message("user", "hi")]


class SlowFake(FakeChatModel):
    """A fake that takes ``delay`` seconds before its first token."""

    def __init__(self, name: str, delay: float) -> None:
        super().__init__(name, responder=lambda m: f"from {name}")
        self.delay = delay

    async def stream(self, messages, options=None):  # type: ignore[no-untyped-def, override]
        await asyncio.sleep(self.delay)
        async for chunk in super().stream(messages, options):
            yield chunk


def _router(
    models: list[FakeChatModel], strategy: str, weights: list[float] | None = None, **kw: object
) -> Router:
    states = [
        DeploymentState(
            Deployment(provider="fake", model=m.name, id=m.name, weight=(weights or [1.0] * len(models))[i]),
            m,
            Health(allowed_fails=2, cooldown_s=30),
        )
        for i, m in enumerate(models)
    ]
    return Router({"g": states}, RouterSettings(strategy=strategy, **kw), rng=random.Random(7))  # type: ignore[arg-type]


def _served(router: Router) -> Counter[str]:
    return Counter({d.name: d.requests for d in router.groups["g"]})


def test_round_robin_is_even() -> None:
    r = _router([FakeChatModel(n) for n in "abc"], "round_robin")
    for _ in range(99):
        asyncio.run(r.model("g").generate(MSGS))
    assert _served(r) == Counter({"a": 33, "b": 33, "c": 33})


def test_weighted_follows_the_weights() -> None:
    r = _router([FakeChatModel("big"), FakeChatModel("small")], "weighted", weights=[3.0, 1.0])
    for _ in range(100):
        asyncio.run(r.model("g").generate(MSGS))
    assert _served(r) == Counter({"big": 75, "small": 25})  # smooth weighted round robin is exact


def test_least_loaded_avoids_a_busy_deployment() -> None:
    busy, idle = SlowFake("busy", 0.5), SlowFake("idle", 0.0)
    r = _router([busy, idle], "least_loaded")

    async def scenario() -> None:
        model = r.model("g")
        hog = asyncio.create_task(model.generate(MSGS))  # round 1 goes to "busy" and stays in flight
        await asyncio.sleep(0.05)
        assert r.groups["g"][0].in_flight == 1
        for _ in range(10):
            await model.generate(MSGS)
        await hog

    asyncio.run(scenario())
    assert _served(r) == Counter({"busy": 1, "idle": 10})


def test_latency_prefers_the_faster_deployment() -> None:
    slow, fast = SlowFake("slow", 0.03), SlowFake("fast", 0.0)
    r = _router([slow, fast], "latency")

    async def go() -> None:
        for _ in range(40):
            await r.model("g").generate(MSGS)

    asyncio.run(go())
    served = _served(r)
    assert served["fast"] >= 34 and served["slow"] >= 1  # each was measured, the fast one took the traffic


def test_streams_count_time_to_first_token() -> None:
    r = _router([SlowFake("a", 0.02)], "latency")

    async def go() -> list[StreamChunk]:
        return [c async for c in r.model("g").stream(MSGS, GenerationOptions(max_tokens=5))]

    chunks = asyncio.run(go())
    state = r.groups["g"][0]
    assert state.ttft.observed and state.ttft.value >= 0.02 and state.in_flight == 0
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


def test_failing_deployment_cools_down_and_is_probed_after() -> None:
    broken, ok = FakeChatModel("broken"), FakeChatModel("ok")
    broken.enqueue(*(UpstreamError("down") for _ in range(5)))
    now = [0.0]
    r = _router([broken, ok], "round_robin", num_retries=2, backoff_base_s=0.0)
    r.clock = lambda: now[0]
    for _ in range(6):
        assert asyncio.run(r.model("g").generate(MSGS)).text == "hi"
    b = r.groups["g"][0]
    assert b.health.state(now[0]) == "cooling_down" and b.failures == 2 and b.requests == 2
    now[0] += 31  # the cooldown ends: one probe is let through, fails, and the breaker reopens
    for _ in range(4):
        asyncio.run(r.model("g").generate(MSGS))
    assert b.requests == 3 and b.health.state(now[0]) == "cooling_down"
    now[0] += 31
    broken._queue.clear()  # it recovered: the probe succeeds and traffic returns
    for _ in range(4):
        asyncio.run(r.model("g").generate(MSGS))
    assert b.health.state(now[0]) == "healthy" and b.requests >= 5


def test_health_rules() -> None:
    h = Health(allowed_fails=3, cooldown_s=10)
    assert h.available(0) and not h.failure(UpstreamError("x"), 0) and not h.failure(UpstreamError("x"), 0)
    assert h.failure(UpstreamError("x"), 0) and h.state(5) == "cooling_down" and not h.available(5)
    assert h.state(10) == "half_open" and h.available(10)
    h.begin(10)
    assert not h.available(10)  # one probe at a time
    h.success()
    assert h.state(11) == "healthy"
    assert h.failure(RateLimitError("slow", retry_after=2.5), 20)  # a rate limit cools down at once
    assert h.state(22) == "cooling_down" and h.state(22.5) == "half_open"


def test_backoff_is_bounded_jittered_and_honours_retry_after() -> None:
    p = RetryPolicy(num_retries=5, base_s=0.1, max_s=1.0)
    assert p.delay(0, rand=1.0) == pytest.approx(0.1) and p.delay(3, rand=1.0) == pytest.approx(0.8)
    assert p.delay(10, rand=1.0) == pytest.approx(1.0) and p.delay(2, rand=0.0) == 0.0
    assert p.delay(0, retry_after=2.0, rand=0.5) == 2.0
    delays = {p.delay(2) for _ in range(50)}
    assert len(delays) > 40 and all(0 <= d <= 0.4 for d in delays)
    assert RetryPolicy.retryable(UpstreamError("x")) and not RetryPolicy.retryable(
        UpstreamError("x", retryable=False)
    )


def test_peak_ewma_jumps_up_and_decays_down() -> None:
    e = PeakEwma(tau=1.0)
    e.observe(0.1, 0.0)
    e.observe(0.5, 0.1)
    assert e.value == 0.5  # a slow observation is taken at once
    e.observe(0.1, 10.0)
    assert 0.1 <= e.value < 0.11  # after 10 tau a fast one has pulled it down


def test_concurrency_cap_is_respected() -> None:
    slow = SlowFake("slow", 0.05)
    r = Router(
        {"g": [DeploymentState(Deployment(provider="fake", model="s", max_concurrency=2), slow, Health())]},
        RouterSettings(),
    )
    peak = [0]

    async def watch() -> None:
        for _ in range(40):
            peak[0] = max(peak[0], r.groups["g"][0].in_flight)
            await asyncio.sleep(0.005)

    async def go() -> None:
        await asyncio.gather(watch(), *(r.model("g").generate(MSGS) for _ in range(6)))

    asyncio.run(go())
    assert peak[0] == 2 and r.groups["g"][0].requests == 6


def test_a_group_that_is_all_cooling_down_says_so() -> None:
    broken = FakeChatModel("broken")
    broken.enqueue(*(UpstreamError("down") for _ in range(2)))
    now = [0.0]
    r = _router([broken], "round_robin", num_retries=1, backoff_base_s=0.0, backoff_max_s=0.0)
    r.clock = lambda: now[0]
    with pytest.raises(AllAttemptsFailedError):
        asyncio.run(r.model("g").generate(MSGS))  # two failures: the deployment cools down
    assert r.groups["g"][0].health.state(now[0]) == "cooling_down"
    with pytest.raises(UpstreamError) as caught:
        asyncio.run(r.model("g").generate(MSGS))
    assert "no deployment is available" in str(caught.value)
    assert "0 attempts" not in str(caught.value)
