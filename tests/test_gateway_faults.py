"""The router against real misbehaving upstreams on 127.0.0.1 (tests/upstreams.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from groundwork.container import Container
from groundwork.errors import (
    AllAttemptsFailedError,
    GroundworkError,
    InputError,
    StreamInterruptedError,
)
from groundwork.types import GenerationOptions, Message
from tests.conftest import fake_settings
from tests.upstreams import ANSWER, upstream

MSGS = [Message("user", "hello")]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, int]]]:
    with upstream() as s:
        yield s


def _container(tmp_path: Path, root: str, groups: dict[str, list[str]], **router: Any) -> Container:
    models = {
        "default_group": next(iter(groups)),
        "groups": {
            g: [
                {"provider": "openai", "model": "m", "base_url": f"{root}/{b}/v1", "id": b}
                for b in behaviours
            ]
            for g, behaviours in groups.items()
        },
    }
    settings = dict(num_retries=3, backoff_base_s=0.01, attempt_timeout_s=5.0, timeout_s=20, cooldown_s=5)
    settings.update(router)
    return Container(fake_settings(tmp_path / "d", models=models, router=settings))


async def _many(c: Container, group: str, n: int, stream: bool) -> list[str | GroundworkError]:
    model = c.chat_model_for(group)

    async def one() -> str | GroundworkError:
        try:
            if stream:
                return "".join(
                    [ch.delta async for ch in model.stream(MSGS, GenerationOptions(max_tokens=20))]
                )
            return (await model.generate(MSGS)).text
        except GroundworkError as exc:
            return exc

    try:
        return list(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await c.aclose_clients()


FAULTS = [
    (bad, stream)
    for bad in ("e500", "e429", "hang", "reset", "badjson", "cut", "empty")
    for stream in (False, True)
    if (bad, stream) != ("cut", True)  # a stream cut after tokens is not retried: see the tests below
]


@pytest.mark.parametrize(("bad", "stream"), FAULTS)
def test_one_healthy_deployment_is_enough(
    tmp_path: Path, server: tuple[str, dict[str, int]], bad: str, stream: bool
) -> None:
    root, hits = server
    # The upstream shares this process's GIL: under a loaded CI machine a healthy answer can take
    # longer than a tight timeout, which would blame it. Only "hang" needs the timeout to fire.
    c = _container(tmp_path, root, {"g": [bad, "ok"]}, attempt_timeout_s=1.5 if bad == "hang" else 5.0)
    before = hits.get(bad, 0)
    results = asyncio.run(_many(c, "g", 12, stream))
    assert results == [ANSWER] * 12, [r for r in results if r != ANSWER][:2]
    assert hits.get(bad, 0) > before  # the faulty deployment was tried
    bad_state = c.router.groups["g"][0]
    good_state = c.router.groups["g"][1]
    assert bad_state.failures >= 1 and bad_state.in_flight == 0 and good_state.in_flight == 0
    assert good_state.failures == 0  # the healthy deployment was never blamed


def test_all_deployments_failing_gives_one_error_listing_each_attempt(
    tmp_path: Path, server: tuple[str, dict[str, int]]
) -> None:
    root, _ = server
    c = _container(tmp_path, root, {"g": ["e500", "reset"]}, num_retries=3)
    [result] = asyncio.run(_many(c, "g", 1, stream=False))
    assert isinstance(result, AllAttemptsFailedError)
    assert len(result.attempts) == 4
    assert {a["deployment"] for a in result.attempts} == {"e500", "reset"}
    assert "e500" in result.message and "reset" in result.message
    assert result.http_status == 503 and result.retryable
    body = result.to_dict()
    assert body["details"]["attempts"][0]["id"].startswith("err_")


def test_rate_limited_everywhere_is_a_429_and_honours_retry_after(
    tmp_path: Path, server: tuple[str, dict[str, int]]
) -> None:
    root, hits = server
    c = _container(tmp_path, root, {"g": ["e429"]}, num_retries=1, cooldown_s=5)
    before = hits.get("e429", 0)
    loop = asyncio.new_event_loop()
    start = loop.time()
    [result] = loop.run_until_complete(_many(c, "g", 1, stream=False))
    elapsed = loop.time() - start
    loop.close()
    assert isinstance(result, AllAttemptsFailedError) and result.http_status == 429
    assert result.retry_after == pytest.approx(0.3)
    assert hits["e429"] - before == 2
    assert elapsed >= 0.3  # the retry waited for Retry-After (the deployment's cooldown)


def test_bad_request_is_not_retried(tmp_path: Path, server: tuple[str, dict[str, int]]) -> None:
    root, hits = server
    c = _container(tmp_path, root, {"g": ["e400", "ok"]}, strategy="round_robin")
    before = hits.get("e400", 0)
    [result] = asyncio.run(_many(c, "g", 1, stream=False))
    assert isinstance(result, InputError) and result.http_status == 400
    assert hits["e400"] - before == 1
    assert len(result.details) == 0 or "attempts" not in result.details  # raised as is, not aggregated
    bad = c.router.groups["g"][0]
    assert bad.failures == 0 and bad.health.cooldowns == 0  # the request was wrong, not the deployment


def test_fallback_to_the_next_group(tmp_path: Path, server: tuple[str, dict[str, int]]) -> None:
    root, _ = server
    c = _container(
        tmp_path,
        root,
        {"primary": ["e500"], "backup": ["ok"]},
        fallbacks={"primary": ["backup"]},
        num_retries=1,
    )
    assert asyncio.run(_many(c, "primary", 3, stream=False)) == [ANSWER] * 3
    assert asyncio.run(_many(c, "primary", 2, stream=True)) == [ANSWER] * 2


def test_context_window_fallback(tmp_path: Path, server: tuple[str, dict[str, int]]) -> None:
    root, hits = server
    c = _container(
        tmp_path,
        root,
        {"small": ["toolong"], "big": ["ok"], "other": ["e500"]},
        fallbacks={"small": ["other"]},
        context_window_fallbacks={"small": ["big"]},
    )
    before = hits.get("e500", 0)
    assert asyncio.run(_many(c, "small", 1, stream=False)) == [ANSWER]
    assert hits.get("e500", 0) == before  # the ordinary fallback was not used for a context-window error


def test_stream_cut_mid_way_ends_with_an_error_carrying_an_id(
    tmp_path: Path, server: tuple[str, dict[str, int]]
) -> None:
    root, _ = server
    c = _container(tmp_path, root, {"g": ["cut"]})
    model = c.chat_model_for("g")
    received: list[str] = []

    async def consume() -> None:
        async for chunk in model.stream(MSGS):
            received.append(chunk.delta)

    with pytest.raises(StreamInterruptedError) as info:
        asyncio.run(consume())
    assert "".join(received) == "The gateway"  # what was sent stays sent, nothing duplicated
    assert info.value.error_id.startswith("err_") and info.value.details["deployment"] == "cut"


def test_cut_stream_with_a_healthy_peer_is_never_silently_truncated(
    tmp_path: Path, server: tuple[str, dict[str, int]]
) -> None:
    root, _ = server
    c = _container(tmp_path, root, {"g": ["cut", "ok"]})
    results = asyncio.run(_many(c, "g", 10, stream=True))
    for r in results:
        assert r == ANSWER or isinstance(r, StreamInterruptedError)
    assert ANSWER in results


def test_usage_and_cost_are_counted_alike_for_streams(
    tmp_path: Path, server: tuple[str, dict[str, int]]
) -> None:
    root, _ = server
    models = {
        "default_group": "g",
        "groups": {
            "g": [
                {
                    "provider": "openai",
                    "model": "m",
                    "base_url": f"{root}/ok/v1",
                    "input_cost_per_token": 0.001,
                    "output_cost_per_token": 0.002,
                }
            ]
        },
    }
    c = Container(fake_settings(tmp_path / "d", models=models))
    model = c.chat_model_for("g")

    async def both() -> tuple[Any, Any]:
        completion = await model.generate(MSGS)
        last = None
        async for chunk in model.stream(MSGS):
            last = chunk
        return completion.usage, last.usage if last else None

    plain, streamed = asyncio.run(both())
    assert plain == streamed
    assert plain.prompt_tokens == 7 and plain.completion_tokens == len(ANSWER.split())
    assert plain.cost == pytest.approx(7 * 0.001 + len(ANSWER.split()) * 0.002)
