"""Conformance suite for :class:`~groundwork.security.ratelimit.CounterStore` backends.

A backend's tests inherit :class:`CounterStoreSuite` and implement :meth:`CounterStoreSuite.make_store`
(a fresh store whose keys no other test shares). Each test runs its own event loop and closes the store.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Awaitable, Callable

from groundwork.security.ratelimit import CounterStore

LONG = 3600.0
"""A period long enough that no token refills while a test runs."""


class CounterStoreSuite:
    """Behaviour every counter store must show; exact under concurrency."""

    def make_store(self) -> CounterStore:
        raise NotImplementedError(f"{type(self).__name__} must implement make_store()")

    def run(self, body: Callable[[CounterStore, str], Awaitable[None]]) -> None:
        async def main() -> None:
            store = self.make_store()
            try:
                await body(store, f"t-{uuid.uuid4().hex}")
            finally:
                await store.aclose()

        asyncio.run(main())

    def test_burst_admits_exactly_the_limit(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            decisions = [await store.hit(key, 1, 5, LONG) for _ in range(7)]
            assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
            assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
            denied = decisions[-1]
            assert denied.remaining == 0
            assert 0 < denied.retry_after <= LONG / 5 + 1
            assert denied.limit == 5

        self.run(body)

    def test_200_concurrent_requests_over_a_limit_of_50_admit_exactly_50(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            decisions = await asyncio.gather(*(store.hit(key, 1, 50, LONG) for _ in range(200)))
            assert sum(d.allowed for d in decisions) == 50
            assert all(d.retry_after > 0 for d in decisions if not d.allowed)

        self.run(body)

    def test_keys_are_independent(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            assert (await store.hit(key + "a", 1, 1, LONG)).allowed
            assert not (await store.hit(key + "a", 1, 1, LONG)).allowed
            assert (await store.hit(key + "b", 1, 1, LONG)).allowed

        self.run(body)

    def test_cost_counts_tokens_and_a_cost_over_the_limit_never_passes(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            assert (await store.hit(key, 60, 100, LONG)).allowed
            second = await store.hit(key, 60, 100, LONG)
            assert not second.allowed and second.remaining == 40
            assert (await store.hit(key, 40, 100, LONG)).allowed
            huge = await store.hit(key + "x", 101, 100, LONG)
            assert not huge.allowed and math.isinf(huge.retry_after)
            assert (await store.hit(key + "x", 100, 100, LONG)).allowed  # the denial took nothing

        self.run(body)

    def test_tokens_refill_over_the_period(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            assert (await store.hit(key, 1, 2, 0.4)).allowed
            assert (await store.hit(key, 1, 2, 0.4)).allowed
            denied = await store.hit(key, 1, 2, 0.4)
            assert not denied.allowed
            await asyncio.sleep(denied.retry_after + 0.05)
            assert (await store.hit(key, 1, 2, 0.4)).allowed

        self.run(body)

    def test_concurrency_cap_is_exact(self) -> None:
        async def body(store: CounterStore, key: str) -> None:
            entered = await asyncio.gather(*(store.enter(key, 10, 60) for _ in range(100)))
            assert sum(entered) == 10
            await store.leave(key)
            assert await store.enter(key, 10, 60)
            assert not await store.enter(key, 10, 60)
            for _ in range(10):
                await store.leave(key)
            assert sum(await asyncio.gather(*(store.enter(key, 3, 60) for _ in range(5)))) == 3

        self.run(body)
