"""What security costs a request: key check, one rate-limit check (memory and Redis), exactness.

    PYTHONPATH=. .venv/bin/python benchmarks/security_overhead.py [--runs 2000]

* ``KeyStore.authenticate`` (one indexed SQLite read and a SHA-256), median per call.
* ``CounterStore.hit`` on the in-process store and on Redis at ``redis://127.0.0.1:6379`` (skipped
  when it is down), sequential, median per call.
* Exactness: 200 concurrent hits over a limit of 50, 20 rounds on each backend: admitted counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from groundwork.security.audit import AUDIT_MIGRATIONS
from groundwork.security.keys import KEY_MIGRATIONS, KeyStore
from groundwork.security.ratelimit import CounterStore, MemoryCounterStore
from groundwork.security.redis_counters import RedisCounterStore
from groundwork.stores.sqlite_db import SQLiteDatabase


def _median_us(samples: list[float]) -> str:
    samples.sort()
    p95 = samples[int(0.95 * (len(samples) - 1))]
    return f"median {statistics.median(samples):8.1f} us   p95 {p95:8.1f} us"


def bench_keys(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = SQLiteDatabase(Path(tmp) / "s.sqlite3", (*KEY_MIGRATIONS, *AUDIT_MIGRATIONS))
        keys = KeyStore(db)
        for i in range(1000):
            keys.create(f"k{i}", "user", ["g"])
        token, _ = keys.create("bench", "user")
        samples = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            keys.authenticate(token)
            samples.append((time.perf_counter_ns() - t0) / 1000)
        print(f"authenticate (1,001 keys stored):       {_median_us(samples)}")
        db.close()


async def bench_store(name: str, store: CounterStore, runs: int) -> None:
    key = f"bench-{uuid.uuid4().hex}"
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        await store.hit(key, 1, 10**9, 60.0)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    print(f"hit, {name:<8}                         {_median_us(samples)}")
    admitted = []
    for _ in range(20):
        k = f"exact-{uuid.uuid4().hex}"
        decisions = await asyncio.gather(*(store.hit(k, 1, 50, 3600.0) for _ in range(200)))
        admitted.append(sum(d.allowed for d in decisions))
    print(f"200 concurrent vs limit 50, {name}: admitted per round {sorted(set(admitted))} (20 rounds)")
    await store.aclose()


async def main_async(runs: int) -> None:
    await bench_store("memory", MemoryCounterStore(), runs)
    try:
        await bench_store("redis", RedisCounterStore("redis://127.0.0.1:6379", prefix="gw:bench:"), runs)
    except Exception as exc:  # Redis is optional here
        print(f"redis: skipped ({exc})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    bench_keys(args.runs)
    asyncio.run(main_async(args.runs))


if __name__ == "__main__":
    main()
