"""Throughput cost of observability, measured A/B on one machine: tracing and metrics off vs on.

    PYTHONPATH=. .venv/bin/python benchmarks/observability_overhead.py --rounds 4 --duration 3
    # the steadiest form on a noisy VM (~20 minutes): new servers each round, all loaded at once
    PYTHONPATH=. .venv/bin/python benchmarks/observability_overhead.py --rounds 16 --duration 6 \
        --sample-ratios "" --concurrency 16 --fresh --together --controls
    # the same, with the code of another checkout as one more variant ("before", old code side by side):
    PYTHONPATH=. .venv/bin/python benchmarks/observability_overhead.py --baseline /tmp/old-checkout

``benchmarks/gateway.py --observability both`` measures off, then on, minutes apart; on a shared machine
the load changes more than the effect between those runs. Here the variants run side by side instead:
one fake upstream (CPU 0) and one ``groundwork serve`` per variant (all on CPU 1, only one loaded at a
time), then ``--rounds`` rounds in which every variant gets a ``--duration`` s ``wrk`` run (non-streamed,
``benchmarks/wrk/chat.lua``) at each concurrency, in a shuffled order, after a warm-up.

Two options against this VM's noise, which moves a server's CPU per request by ±15% from one run to
the next:

* ``--together``: every server is loaded at once (one ``wrk`` each, all of them on CPU 1 sharing it), so
  whatever slows the machine during a round slows every variant alike;
* ``--fresh``: every server is started anew each round (and stopped after it): two processes of the
  same code differ for their whole lives (memory layout, hash seed), so long-lived servers carry that
  difference into every round.

Two figures per variant, each the median over the rounds, and their cost against ``off``, then each
round's CPU per request against the same round's ``off`` (paired):

* **req/s** (wrk's): what issue 7 asks for, but on a shared machine it swings by ±30% from round to
  round with whatever else runs on CPU 1;
* **CPU ms per request** of the server process: its user + system time (``/proc/PID/stat``, every
  thread, so the span export thread counts too) over the run, read before the run and again ``--settle`` s
  after it ended (so the spans it left buffered are exported inside its window), divided by the requests wrk
  completed. Much steadier, and for a CPU-bound server the throughput cost is this increase
  (cost = 1 - off/on).

``--settle`` (2.6 s by default) and ``--settle-before`` (2.6 s: the wait before a run, after the run
before it or the warm-up, so that none of their spans are exported inside the window) are longer than
the export interval (``observability.export_interval_s``, 2 s by default); make them longer for a
variant that exports less often.

Variants: ``off`` (``observability.enabled: false``), ``on`` (the default: every request traced, spans
to the local trace store, metrics), ``on, sample_ratio S`` for each ``--sample-ratios``; with
``--controls`` a second ``off`` and a second ``on`` server (how far two identical servers differ: the
noise floor); with ``--breakdown`` ``metrics only`` (``sample_ratio: 0``) and ``on, no trace store``;
with ``--baseline PATH`` ``on (baseline)``: the default configuration served by the ``groundwork``
package found in ``PATH`` (put first on ``PYTHONPATH``), e.g. an older commit unpacked with ``git
archive``; with ``--variant NAME=PATH`` (repeatable) one more such server, named ``NAME``, per
variant of the code to compare side by side. At the end, each server's dropped spans and failed
exports (its ``/metrics``) are listed: a cost figure means little if spans were dropped.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime: fields 14 and 15 of stat


def thread_counters(pid: int) -> dict[str, list[float]]:
    """Per thread name (the main thread's is the process's): [user s, system s, voluntary and involuntary
    context switches] summed over the threads of that name."""
    counters: dict[str, list[float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "main" if task.name == str(pid) else stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        lines = (line.split(":\t") for line in status.splitlines() if "ctxt" in line)
        switches = {k: float(v) for k, v in lines}
        row = counters.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        row[0] += int(fields[11]) * _TICK_S
        row[1] += int(fields[12]) * _TICK_S
        row[2] += switches.get("voluntary_ctxt_switches", 0.0)
        row[3] += switches.get("nonvoluntary_ctxt_switches", 0.0)
    return counters


@dataclass(frozen=True)
class Variant:
    name: str
    on: bool
    sample_ratio: float = 1.0
    pythonpath: str | None = None
    extra: str = ""  # more observability settings, YAML flow style (``trace_store: false``)


def export_counts(port: int) -> dict[str, float]:
    """``groundwork_spans_dropped_total`` and ``groundwork_spans_export_failed_total`` of a server."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("groundwork_spans_dropped_total", "groundwork_spans_export_failed_total")):
            name, value = line.rsplit(" ", 1)
            counts[name.removeprefix("groundwork_spans_")] = float(value)
    return counts


def add_counts(totals: dict[str, dict[str, float]], name: str, counts: dict[str, float]) -> None:
    """Add one server's :func:`export_counts` to the variant's totals."""
    row = totals.setdefault(name, {})
    for key, value in counts.items():
        row[key] = row.get(key, 0.0) + value


def _cost(value: float, base: float) -> str:
    return f"{(1 - value / base) * 100:.1f}%"


def _variants(args: argparse.Namespace) -> list[Variant]:
    """The servers to run side by side, from the command line."""
    variants = [Variant("off", False), Variant("on", True)]
    variants += [Variant(f"on, sample_ratio {r}", True, float(r)) for r in args.sample_ratios.split(",") if r]
    if args.controls:
        variants += [Variant("off (second server)", False), Variant("on (second server)", True)]
    if args.breakdown:
        variants += [
            Variant("metrics only (sample_ratio 0)", True, 0.0),
            Variant("on, no trace store", True, 1.0, extra="trace_store: false"),
        ]
    if args.baseline:
        variants.append(Variant("on (baseline)", True, 1.0, str(Path(args.baseline).resolve())))
    for spec in args.variant:
        vname, _, vpath = spec.partition("=")
        variants.append(Variant(vname, True, 1.0, str(Path(vpath).resolve())))
    for spec in args.variant_off:
        vname, _, vpath = spec.partition("=")
        variants.append(Variant(vname, False, 1.0, str(Path(vpath).resolve())))
    return variants


def _start_all(
    procs: Processes,
    args: argparse.Namespace,
    work: Path,
    upstream: int,
    variants: list[Variant],
    tag: str,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """One warmed-up ``groundwork serve`` per variant, on CPU 1 (``tag`` makes its name and data dir new),
    started in a shuffled order when ``rng`` is given (the first started and the last differ a little)."""
    variants = list(variants)
    if rng is not None:
        rng.shuffle(variants)
    started = {
        v.name: start_groundwork(
            procs,
            args.groundwork,
            work,
            upstream,
            "1",
            v.on,
            v.sample_ratio,
            name=f"gw{i}{tag}",
            pythonpath=v.pythonpath,
            observability_extra=v.extra,
        )
        for i, v in enumerate(variants)
    }
    for name, t in started.items():  # warm-up
        settle(run_wrk(name, f"http://{HOST}:{t.port}/v1/chat/completions", "", "non-stream", 16, 2, 10))
    return started


def _measure(
    group: list[str],
    targets: dict[str, Any],
    c: int,
    args: argparse.Namespace,
    r: int,
    rps: dict[tuple[str, int], list[float]],
    cpu_ms: dict[tuple[str, int], list[float]],
    per_thread: dict[tuple[str, int, str], list[list[float]]],
) -> None:
    """One ``wrk`` run per server in ``group``, all at the same time, and each server's CPU per request."""
    pids = {name: targets[name].proc.pid for name in group}
    if args.settle_before:  # spans of earlier load (the warm-ups) exported before the window opens
        time.sleep(args.settle_before)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    threads_before = {name: thread_counters(pid) if args.threads else {} for name, pid in pids.items()}
    with ThreadPoolExecutor(len(group)) as pool:
        futures = {
            name: pool.submit(
                run_wrk,
                name,
                f"http://{HOST}:{targets[name].port}/v1/chat/completions",
                "",
                "non-stream",
                c,
                args.duration,
                10,
            )
            for name in group
        }
        points = {name: f.result() for name, f in futures.items()}
    settle(max(points.values(), key=lambda p: p.concurrency / max(p.rps, 1.0)))
    time.sleep(args.settle)  # the export threads' next batch (every 2 s by default) lands in this window
    for name, point in points.items():
        per_request = (cpu_seconds(pids[name]) - before[name]) * 1000 / max(point.requests, 1)
        if args.threads:
            for thread, now in thread_counters(pids[name]).items():
                was = threads_before[name].get(thread, [0.0] * 4)
                per_thread.setdefault((name, c, thread), []).append(
                    [(a - b) / max(point.requests, 1) for a, b in zip(now, was, strict=True)]
                )
        rps.setdefault((name, c), []).append(point.rps)
        cpu_ms.setdefault((name, c), []).append(per_request)
        print(
            f"round {r + 1} {name:24} c={c:<3} {point.rps:8.1f} req/s {per_request:6.3f} CPU ms/request",
            file=sys.stderr,
        )


def _report(
    args: argparse.Namespace,
    variants: list[Variant],
    concurrency: list[int],
    load: list[str],
    rps: dict[tuple[str, int], list[float]],
    cpu_ms: dict[tuple[str, int], list[float]],
    per_thread: dict[tuple[str, int, str], list[list[float]]],
    exports: dict[str, dict[str, float]],
) -> None:
    """The markdown report on stdout."""
    print(
        f"- rounds: {args.rounds} x {args.duration:g} s per variant and concurrency; load: {' | '.join(load)}"
    )
    print(
        "\n| variant | c | req/s per round | median req/s | req/s cost vs off "
        "| CPU ms/request per round | median CPU ms/request | CPU cost vs off |"
        "\n|---|---:|---|---:|---:|---|---:|---:|"
    )
    for v in variants:
        for c in concurrency:
            values, cpus = rps[(v.name, c)], cpu_ms[(v.name, c)]
            med, base = statistics.median(values), statistics.median(rps[("off", c)])
            cmed, cbase = statistics.median(cpus), statistics.median(cpu_ms[("off", c)])
            cost = "-" if v.name == "off" else _cost(med, base)
            ccost = "-" if v.name == "off" else _cost(cbase, cmed)
            print(
                f"| {v.name} | {c} | {', '.join(f'{x:.0f}' for x in values)} | {med:.1f} | {cost} "
                f"| {', '.join(f'{x:.3f}' for x in cpus)} | {cmed:.3f} | {ccost} |"
            )
    print(
        "\nPaired by round (the servers of one round ran minutes apart at most; with ``--fresh`` they "
        "were new processes): each round's CPU ms per request against the same round's ``off``\n\n"
        "| variant | c | ratio per round | median ratio | rounds above 1.05 |\n|---|---:|---|---:|---:|"
    )
    for v in variants:
        if v.name == "off":
            continue
        for c in concurrency:
            ratios = [a / b for a, b in zip(cpu_ms[(v.name, c)], cpu_ms[("off", c)], strict=True)]
            print(
                f"| {v.name} | {c} | {', '.join(f'{x:.3f}' for x in ratios)} | "
                f"{statistics.median(ratios):.3f} | {sum(x > 1.05 for x in ratios)} of {len(ratios)} |"
            )
    if args.threads:
        print(
            "\nBy thread, medians over the rounds, per request: user and system CPU µs, voluntary and "
            "involuntary context switches\n\n| variant | c | thread | user µs | system µs | voluntary cs "
            "| involuntary cs |\n|---|---:|---|---:|---:|---:|---:|"
        )
        for (name, c, thread), rows in per_thread.items():
            meds = [statistics.median(r[i] for r in rows) for i in range(4)]
            print(
                f"| {name} | {c} | {thread} | {meds[0] * 1e6:.1f} | {meds[1] * 1e6:.1f} | {meds[2]:.3f} "
                f"| {meds[3]:.3f} |"
            )
    print("\nSpans dropped (queue full) and failed exports at the end, by server:\n")
    for name, counts in exports.items():
        print(f"- {name}: {', '.join(f'{k} {v:g}' for k, v in counts.items()) or 'none (0)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--sample-ratios", default="0.1")
    parser.add_argument("--baseline", help="a directory holding another groundwork package to measure too")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one more 'on' server (the default configuration) running the groundwork package in PATH "
        "(put first on PYTHONPATH): an A/B variant of the code side by side; repeatable",
    )
    parser.add_argument(
        "--variant-off",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="as --variant, with observability off",
    )
    parser.add_argument("--groundwork", default=str(ROOT / ".venv" / "bin" / "groundwork"))
    parser.add_argument(
        "--controls",
        action="store_true",
        help="add a second 'off' and a second 'on' server: how far two identical servers differ",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="also report user and system CPU time and context switches per request, by thread",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="add variants that tell the parts apart: metrics only (sample_ratio 0), spans without the "
        "trace store",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="load every server at once (one wrk each; they share CPU 1) instead of one after the other: "
        "whatever slows the machine meanwhile slows them all alike",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start every server anew each round (then stop it): two processes of the same code can "
        "differ by several percent for the whole of their lives (memory layout, hash seed), so a "
        "difference between two long-lived servers is partly theirs, not the code's",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.6,
        help="seconds waited after each wrk run before reading the servers' CPU time: longer than the "
        "export interval of every variant, so that the spans of the run are exported inside its window",
    )
    parser.add_argument(
        "--settle-before",
        type=float,
        default=2.6,
        help="seconds waited before each wrk run (before reading the CPU time): longer than the export "
        "interval, so that the spans of the warm-up or the run before are not counted in the window",
    )
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    variants = _variants(args)
    rps: dict[tuple[str, int], list[float]] = {}
    cpu_ms: dict[tuple[str, int], list[float]] = {}
    per_thread: dict[tuple[str, int, str], list[list[float]]] = {}
    load = [_loadavg()]
    exports: dict[str, dict[str, float]] = {}
    with _workdir() as work:
        procs = Processes(work)
        try:
            upstream = start_upstream(procs, sys.executable, "0")

            targets = {} if args.fresh else _start_all(procs, args, work, upstream.port, variants, "")
            rng = random.Random(0)
            for r in range(args.rounds):
                if args.fresh:  # new processes (new memory layout, hash seed, data dir) every round
                    targets = _start_all(procs, args, work, upstream.port, variants, f"r{r + 1}", rng)
                order = list(targets)
                rng.shuffle(order)
                for c in concurrency:
                    for group in [order] if args.together else [[name] for name in order]:
                        _measure(group, targets, c, args, r, rps, cpu_ms, per_thread)
                load.append(_loadavg())
                if args.fresh:
                    for v in variants:
                        if v.on:
                            add_counts(exports, v.name, export_counts(targets[v.name].port))
                        procs.stop(targets[v.name].proc)
            if not args.fresh:
                for v in variants:
                    if v.on:
                        add_counts(exports, v.name, export_counts(targets[v.name].port))
        finally:
            procs.stop_all()
    _report(args, variants, concurrency, load, rps, cpu_ms, per_thread, exports)


if __name__ == "__main__":
    main()
