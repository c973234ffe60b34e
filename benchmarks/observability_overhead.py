"""Throughput cost of observability, measured A/B on one machine: tracing and metrics off vs on.

    PYTHONPATH=. .venv/bin/python benchmarks/observability_overhead.py --rounds 4 --duration 3

``benchmarks/gateway.py --observability both`` measures off, then on, minutes apart; on a shared machine
the load changes more than the effect between those runs. Here the variants run side by side instead:
one fake upstream (CPU 0) and one ``groundwork serve`` per variant (all on CPU 1, only one loaded at a
time), then ``--rounds`` rounds in which every variant gets a ``--duration`` s ``wrk`` run (non-streamed,
``benchmarks/wrk/chat.lua``) at each concurrency, in a shuffled order, after a warm-up. The report is
the median req/s of each variant over the rounds and its cost against ``off`` (1 - on/off).

Variants: ``off`` (``observability.enabled: false``), ``on`` (the default: every request traced, spans
to the local trace store, metrics) and ``on, sample_ratio S`` for each ``--sample-ratios``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import (
    HOST,
    ROOT,
    Processes,
    _loadavg,
    _workdir,
    run_wrk,
    settle,
    start_groundwork,
    start_upstream,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--sample-ratios", default="0.1")
    parser.add_argument("--groundwork", default=str(ROOT / ".venv" / "bin" / "groundwork"))
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    variants: list[tuple[str, bool, float]] = [("off", False, 1.0), ("on", True, 1.0)]
    variants += [(f"on, sample_ratio {r}", True, float(r)) for r in args.sample_ratios.split(",") if r]
    rps: dict[tuple[str, int], list[float]] = {}
    load = [_loadavg()]
    with _workdir() as work:
        procs = Processes(work)
        try:
            upstream = start_upstream(procs, sys.executable, "0")
            targets = {
                name: start_groundwork(
                    procs, args.groundwork, work, upstream.port, "1", on, ratio, name=f"gw{i}"
                )
                for i, (name, on, ratio) in enumerate(variants)
            }
            for name, t in targets.items():  # warm-up
                settle(
                    run_wrk(name, f"http://{HOST}:{t.port}/v1/chat/completions", "", "non-stream", 16, 2, 10)
                )
            rng = random.Random(0)
            for r in range(args.rounds):
                order = list(targets)
                rng.shuffle(order)
                for name in order:
                    url = f"http://{HOST}:{targets[name].port}/v1/chat/completions"
                    for c in concurrency:
                        point = run_wrk(name, url, "", "non-stream", c, args.duration, 10)
                        rps.setdefault((name, c), []).append(point.rps)
                        print(f"round {r + 1} {name:24} c={c:<3} {point.rps:8.1f} req/s", file=sys.stderr)
                        settle(point)
                load.append(_loadavg())
        finally:
            procs.stop_all()
    print(
        f"- rounds: {args.rounds} x {args.duration:g} s per variant and concurrency; load: {' | '.join(load)}"
    )
    print("\n| variant | c | req/s per round | median req/s | cost vs off |\n|---|---:|---|---:|---:|")
    for name, _, _ in variants:
        for c in concurrency:
            values = rps[(name, c)]
            med, base = statistics.median(values), statistics.median(rps[("off", c)])
            cost = "-" if name == "off" else f"{(1 - med / base) * 100:.1f}%"
            print(f"| {name} | {c} | {', '.join(f'{v:.0f}' for v in values)} | {med:.1f} | {cost} |")


if __name__ == "__main__":
    main()
