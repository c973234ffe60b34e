"""Router cooldowns shared between replicas: the HealthState seam, in memory and in Redis."""

from __future__ import annotations

import asyncio
import random
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from groundwork.config import Deployment, RouterSettings
from groundwork.container import Container
from groundwork.errors import ServiceUnavailableError, UpstreamError
from groundwork.gateway import DeploymentState, Health, Router
from groundwork.gateway.health_state import HealthState, MemoryHealthState
from groundwork.gateway.redis_health import RedisHealthState
from groundwork.models.fake import FakeChatModel
from groundwork.stores.redis_client import client_for
from groundwork.types import Message
from tests.conftest import fake_settings, require

REDIS_URL = "redis://127.0.0.1:6379/0"
MSGS = [Message("user", "hi")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_state() -> Iterator[RedisHealthState]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        up = True
    except redis.RedisError:
        up = False
    require(up, f"Redis is not running at {REDIS_URL}")
    prefix = f"groundwork:test:{uuid.uuid4().hex[:8]}:"
    state = RedisHealthState(REDIS_URL, prefix=prefix)
    yield state
    for key in state.client.scan_iter(prefix + "*"):
        state.client.delete(key)


@pytest.fixture
def clock() -> list[float]:
    """The test's clock: the routers' ``now`` and (offset) Redis's wall clock move together."""
    return [0.0]


@pytest.fixture(params=["memory", "redis"])
def shared(request: pytest.FixtureRequest, clock: list[float]) -> HealthState:
    if request.param == "memory":
        return MemoryHealthState()
    prefix = request.getfixturevalue("redis_state").prefix
    return RedisHealthState(REDIS_URL, prefix=prefix, wall_clock=lambda: 1_000_000.0 + clock[0])


def test_a_cooldown_started_by_one_replica_is_honoured_by_another(
    shared: HealthState, clock: list[float]
) -> None:
    a = Health(allowed_fails=1, cooldown_s=30, shared=shared, key="g/x", sync_interval_s=1.0)
    b = Health(allowed_fails=1, cooldown_s=30, shared=shared, key="g/x", sync_interval_s=1.0)

    def at(t: float) -> float:
        clock[0] = t
        return t

    assert a.available(at(100.0)) and b.available(at(100.0))
    assert a.failure(UpstreamError("down"), at(100.0))  # replica A opens the breaker
    assert b.available(at(100.5))  # B read the shared state less than a second ago
    assert not b.available(at(101.0)) and b.state(101.0) == "cooling_down"
    assert b.cooldown_until == pytest.approx(130.0)
    assert b.available(at(131.0)) and b.state(131.0) == "half_open"  # B may probe when the cooldown ends
    b.begin(131.0)
    b.success()  # its probe succeeded: cleared everywhere
    assert shared.get("g/x", at(131.0)) == 0.0
    assert not a.available(at(102.0))  # A keeps its own cooldown until it ends
    other = Health(shared=shared, key="g/y")
    assert other.available(at(101.0))  # keys are separate


def test_redis_state_converts_between_the_replicas_clocks(redis_state: RedisHealthState) -> None:
    wall = [1_000_000.0]
    one = RedisHealthState(REDIS_URL, prefix=redis_state.prefix, wall_clock=lambda: wall[0])
    one.put("g/x", until=50.0, now=20.0)  # 30 s from now on replica one's monotonic clock
    wall[0] += 5
    # replica two's monotonic clock reads 9000 at the same moment: 25 s remain
    assert one.get("g/x", now=9000.0) == pytest.approx(9025.0)
    ttl = redis_state.client.pttl(redis_state.prefix + "g/x")
    assert 0 < ttl <= 30_000  # the key expires with the cooldown
    one.put("g/x", 0.0, 0.0)
    assert one.get("g/x", 9000.0) == 0.0


def test_routers_of_two_replicas_share_a_cooldown(redis_state: RedisHealthState) -> None:
    def replica(broken: FakeChatModel) -> Router:
        states = [
            DeploymentState(
                Deployment(provider="fake", model=m.name, id=m.name),
                m,
                Health(allowed_fails=2, cooldown_s=30, shared=redis_state, key=f"g/{m.name}"),
            )
            for m in (broken, FakeChatModel("ok"))
        ]
        settings = RouterSettings(strategy="round_robin", num_retries=2, backoff_base_s=0.0)
        return Router({"g": states}, settings, rng=random.Random(1))

    broken_a, broken_b = FakeChatModel("broken"), FakeChatModel("broken")
    broken_a.enqueue(*(UpstreamError("down") for _ in range(5)))
    a, b = replica(broken_a), replica(broken_b)
    now = [0.0]
    a.clock = b.clock = lambda: now[0]
    for _ in range(4):
        assert asyncio.run(a.model("g").generate(MSGS)).text == "hi"
    assert a.groups["g"][0].health.state(now[0]) == "cooling_down"
    now[0] += 2  # past B's sync interval
    for _ in range(6):
        asyncio.run(b.model("g").generate(MSGS))
    assert b.groups["g"][0].requests == 0  # B never sent a request to the deployment A found failing
    assert b.groups["g"][1].requests == 6


def test_a_redis_outage_while_serving_degrades_to_local_cooldowns() -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    state = RedisHealthState(url, client=client_for(url, timeout_s=0.5))  # connected, then the server died
    h = Health(allowed_fails=1, cooldown_s=10, shared=state, key="g/x")
    started = time.monotonic()
    assert h.available(0.0)  # the read failed: no shared cooldown, local state only
    assert h.failure(UpstreamError("down"), 1.0) and not h.available(2.0)  # still cools down locally
    for t in range(3, 30):
        h.available(float(t))  # syncs each simulated second, but Redis is left alone for pause_s
    assert time.monotonic() - started < 2.0  # fails fast: no retries with backoff on the request path
    assert state.errors == 1
    problems = state.problems()  # what /readyz calls: it pings regardless of the pause
    assert problems and "per replica" in problems[0]
    assert state.errors == 2


def test_an_unreachable_redis_fails_at_start_naming_the_fix(tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"
    c = Container(fake_settings(tmp_path, redis_url=url, router={"health_state": "redis"}))
    with pytest.raises(ServiceUnavailableError) as info:
        c.router  # noqa: B018
    message = info.value.message
    assert "cannot reach Redis at redis://127.0.0.1:" in message
    assert "GROUNDWORK_REDIS_URL" in message and "router.health_state: memory" in message
    assert "hunter2" not in message


def test_the_container_wires_the_configured_health_state(tmp_path: Path) -> None:
    c = Container(fake_settings(tmp_path))
    assert isinstance(c.health_state, MemoryHealthState)
    health = c.router.groups["fake"][0].health
    assert health.shared is c.health_state and health.key == "fake/fake/fake"


def test_readyz_reports_a_redis_outage_as_degraded(tmp_path: Path) -> None:
    import httpx

    from groundwork.api import create_app

    c = Container(fake_settings(tmp_path))
    url = f"redis://127.0.0.1:{_free_port()}"
    c.__dict__["health_state"] = RedisHealthState(url, client=client_for(url, timeout_s=0.5))

    async def ready() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(c))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/readyz")

    r = asyncio.run(ready())
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded" and "router cooldowns are per replica" in body["degraded"][0]
    c.close()
