"""CPU per trace of the local trace store, by export batch size (one SQLite transaction per batch).

    PYTHONPATH=. .venv/bin/python benchmarks/trace_store_batches.py --rounds 8

Traces shaped like a non-streamed chat completion's (a root span with the request's 13 attributes and
two children), written into a store already holding 20,000 traces, in batches of each size in turn
(interleaved rounds, one store per size); user and system CPU time of the process per trace, medians.

``--codecs`` also times the compression of one batch's JSON, as the store writes it, with zlib at
level 1 (what the store used before), Zstandard at level 1 (what it uses) and 3, and LZ4 when the
``lz4`` package is installed: thread CPU µs and compressed bytes per span, medians of ``--rounds``.
``--reads`` also times the reads, once the stores are full: ``stats()``, ``trace(id)`` (50 traces
spread over the store) and ``recent(20)``, ms, medians of 5.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import orjson
import zstandard

from groundwork.observability.store import TraceStore, batch_rows
from groundwork.observability.tracing import RecordingSpan, Tracing

ROOT_ATTRIBUTES = {
    "http.request.method": "POST",
    "url.path": "/v1/chat/completions",
    "http.route": "/v1/chat/completions",
    "http.response.status_code": 200,
    "groundwork.request_id": "0123456789abcdef0123",
    "groundwork.principal": "anonymous",
    "gen_ai.request.model": "bench",
    "gen_ai.response.model": "bench",
    "gen_ai.response.finish_reason": "stop",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 20,
    "groundwork.cost": 0.0,
    "cache.result": "miss",
}


def trace(tracing: Tracing) -> list[RecordingSpan]:
    root = tracing.root("POST /v1/chat/completions", dict(ROOT_ATTRIBUTES))
    children = [
        RecordingSpan(
            tracing, "cache.lookup", root.trace_id, root, {"cache.kind": "exact", "cache.hit": False}
        ),
        RecordingSpan(tracing, "model.attempt", root.trace_id, root, {"group": "bench", "attempt": 1}),
    ]
    for s in [*children, root]:
        s.end_ns = time.time_ns()
    return [*children, root]


def codecs(tracing: Tracing, sizes: list[int], rounds: int) -> None:
    """Compression of a batch's JSON: CPU µs and bytes per span, by codec and batch size."""
    choices: dict[str, Callable[[bytes], bytes]] = {
        "zlib 1": lambda b: zlib.compress(b, 1),
        "zstd 1": lambda b: zstandard.ZstdCompressor(level=1).compress(b),
        "zstd 3": lambda b: zstandard.ZstdCompressor(level=3).compress(b),
    }
    try:
        import lz4.frame  # type: ignore[import-not-found]

        choices["lz4"] = lz4.frame.compress
    except ImportError:
        pass
    print("| spans per batch | JSON B per span | codec | CPU µs per span | B per span |")
    print("|---:|---:|---|---:|---:|")
    for n in sizes:
        data = orjson.dumps(batch_rows([s for _ in range(n // 3) for s in trace(tracing)]))
        spans = n // 3 * 3
        for name, compress in choices.items():
            times = []
            for _ in range(rounds * 5):
                started = time.thread_time_ns()
                out = compress(data)
                times.append((time.thread_time_ns() - started) / 1000 / spans)
            print(
                f"| {spans} | {len(data) / spans:.0f} | {name} | {statistics.median(times):.3f} "
                f"| {len(out) / spans:.1f} |"
            )


def reads(store: TraceStore, n: int, trace_ids: list[str]) -> None:
    """How long the reads take on a store of 20,000 traces written in batches of ``n`` spans."""
    times: dict[str, list[float]] = {"stats()": [], "trace(id)": [], "recent(20)": []}
    for _ in range(5):
        started = time.perf_counter()
        store.stats()
        times["stats()"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for trace_id in trace_ids:
            store.trace(trace_id)
        times["trace(id)"].append((time.perf_counter() - started) / len(trace_ids))
        started = time.perf_counter()
        store.recent(20)
        times["recent(20)"].append(time.perf_counter() - started)
    summary = ", ".join(f"{name} {statistics.median(t) * 1000:.2f} ms" for name, t in times.items())
    print(f"reads, {n} spans a batch: {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--traces", type=int, default=3000, help="traces written per round and size")
    parser.add_argument("--sizes", default="512,4096", help="spans per batch")
    parser.add_argument("--codecs", action="store_true", help="also time the compressors (see above)")
    parser.add_argument("--reads", action="store_true", help="also time the reads (see above)")
    args = parser.parse_args()
    tracing = Tracing("bench", {})
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.codecs:
        codecs(tracing, sizes, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        stores = {n: TraceStore(Path(tmp) / f"{n}.sqlite3") for n in sizes}
        for n, store in stores.items():  # a full store: prunes delete as much as is added
            traces = [trace(tracing) for _ in range(20_000)]
            spans = [s for t in traces for s in t]
            for i in range(0, len(spans), n):
                store.add_spans(spans[i : i + n])
            if args.reads:
                reads(store, n, [f"{t[-1].trace_id:032x}" for t in traces[:: len(traces) // 50]])
        cpu: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
        for _ in range(args.rounds):
            for n, store in stores.items():
                spans = [s for _ in range(args.traces) for s in trace(tracing)]
                before = resource.getrusage(resource.RUSAGE_SELF)
                for i in range(0, len(spans), n):
                    store.add_spans(spans[i : i + n])
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu[n].append(
                    (
                        (after.ru_utime - before.ru_utime) * 1e6 / args.traces,
                        (after.ru_stime - before.ru_stime) * 1e6 / args.traces,
                    )
                )
        for store in stores.values():
            store.close()
    print("| spans per batch | user µs per trace | system µs per trace | per round (user+system) |")
    print("|---:|---:|---:|---|")
    for n, values in cpu.items():
        user = statistics.median(u for u, _ in values)
        system = statistics.median(s for _, s in values)
        rounds = ", ".join(f"{u + s:.1f}" for u, s in values)
        print(f"| {n} | {user:.1f} | {system:.1f} | {rounds} |")


if __name__ == "__main__":
    main()
