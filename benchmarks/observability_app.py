"""The real gateway app in process, observability off or on: a deterministic measure for callgrind.

    PYTHONPATH=. .venv/bin/python benchmarks/observability_app.py --mode on --requests 2000
    # instructions per request, off vs on (the startup cancels out between the two request counts):
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.on.2000 \\
        .venv/bin/python benchmarks/observability_app.py --mode on --requests 2000
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.on.4000 \\
        .venv/bin/python benchmarks/observability_app.py --mode on --requests 4000

The app is built as ``groundwork serve`` builds it (``Settings``, ``Container``, ``create_app``, the
lifespan's warm-up, ``freeze_startup_heap``, ``raise_gc_threshold``), with the configuration
``benchmarks/gateway.py`` gives its servers (``security.auth: false``, one OpenAI-compatible deployment),
except that the model is served by ``--upstream`` (a running ``benchmarks/fake_upstream.py``; by default
the scripted fake chat model in process). ``--concurrency`` tasks then send ``POST /v1/chat/completions``
(wrk's body) straight to the ASGI app until ``--requests`` are answered, and the export queues are
flushed; the script prints the process's CPU time and the main thread's per request, the garbage
collector's collections and own time (``gc.callbacks``), and the peak RSS (``ru_maxrss``). Under
callgrind, the difference of the total instruction counts of two runs with different ``--requests``,
divided by the difference in requests, is the instructions per request, every thread included; it does
not care about other jobs on the machine.

Modes: ``off`` (``observability.enabled: false``), ``metrics`` (``sample_ratio: 0``), ``spans`` (every
request traced, no trace store), ``on`` (the default: every request traced into the local trace store).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

BODY = b'{"model":"bench","messages":[{"role":"user","content":"hi"}],"max_tokens":16}'

MODES: dict[str, dict[str, Any]] = {
    "off": {"enabled": False},
    "metrics": {"sample_ratio": 0.0},
    "spans": {"trace_store": False},
    "on": {},
}


async def drive(app: Any, requests: int, concurrency: int) -> list[int]:
    """Send ``requests`` chat completions through ``app`` from ``concurrency`` tasks; their statuses."""
    statuses: list[int] = []
    left = requests

    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions",
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(BODY)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        await app(scope, receive, send)

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def callgrind_instrumentation(on: bool) -> None:
    """Switch callgrind's instrumentation of this process on or off (``callgrind_control -i``).

    The process keeps running Python meanwhile: valgrind reads the command only between instructions.
    """
    import os
    import subprocess

    proc = subprocess.Popen(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], stdout=subprocess.DEVNULL
    )
    while proc.poll() is None:
        sum(range(1000))
    if proc.returncode != 0:
        raise SystemExit("callgrind_control failed: run under valgrind --tool=callgrind")


def current_rss_mb() -> float:
    """This process's resident set now, MB (``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def tune_queues(queues: Any, args: argparse.Namespace, graveyard: list[Any]) -> None:
    """Apply ``--export-delay`` and ``--wake-at`` to the export queues; with ``--free-on-loop`` make each
    hand its exported batches to ``graveyard`` (their last reference), so that the event loop, which
    empties it, frees the span records rather than the export thread."""
    for queue in queues:
        if args.export_delay:
            queue.delay_s = args.export_delay
        if args.wake_at:
            queue._wake_at = args.wake_at
        if args.free_on_loop:

            def export_keeping(batch: Any, export: Any = queue._export) -> None:
                export(batch)
                graveyard.append(batch)

            queue._export = export_keeping


async def bury(graveyard: list[Any]) -> None:
    """Empty ``graveyard`` every 10 ms, on the event loop (with ``--free-on-loop``)."""
    while True:
        await asyncio.sleep(0.01)
        graveyard.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="on")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--upstream", default="", help="base URL of a fake upstream (default: fake model)")
    parser.add_argument("--data-dir", default="")
    parser.add_argument(
        "--export-delay",
        type=float,
        default=0.0,
        help="the export threads' wait between exports, s (default: theirs, 2 s; under callgrind, which "
        "runs ~50 times slower, use a large one so that batches are as large as at full speed)",
    )
    parser.add_argument(
        "--wake-at",
        type=int,
        default=0,
        help="wake the export threads when this many spans wait (default: theirs, half the queue)",
    )
    parser.add_argument(
        "--free-on-loop",
        action="store_true",
        help="an experiment: exported span records are freed by the event loop, not the export thread",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="under valgrind --tool=callgrind --instr-atstart=no: instrument the measured requests only",
    )
    parser.add_argument(
        "--gc-threshold",
        default="",
        help="gc.set_threshold(...) instead of serve's raise_gc_threshold(), e.g. 700,10,10 for Python's "
        "default",
    )
    args = parser.parse_args()

    import uvloop

    from groundwork.api.app import create_app
    from groundwork.api.server import freeze_startup_heap, raise_gc_threshold
    from groundwork.config import Settings
    from groundwork.container import Container

    data = Path(args.data_dir or tempfile.mkdtemp(prefix="obs-app-"))
    if args.upstream:
        deployment = {"provider": "openai", "model": "bench", "base_url": args.upstream}
    else:
        deployment = {"provider": "fake", "model": "bench"}
    settings = Settings.load(
        None,
        data_dir=data,
        observability=MODES[args.mode],
        embeddings={"provider": "fake"},
        security={"auth": False},
        models={"default_group": "bench", "groups": {"bench": [deployment]}},
    )
    container = Container(settings)
    app = create_app(container)
    obs = container.observability
    graveyard: list[Any] = []
    if obs is not None:
        tune_queues(obs.tracing.queues.values(), args, graveyard)

    async def run() -> None:
        burying = asyncio.ensure_future(bury(graveyard))
        async with app.router.lifespan_context(app):
            statuses = await drive(app, args.warmup, args.concurrency)
            if obs is not None:
                await asyncio.to_thread(obs.tracing.force_flush, 30)
            freeze_startup_heap()
            if args.gc_threshold:
                gc.set_threshold(*(int(n) for n in args.gc_threshold.split(",")))
            else:
                raise_gc_threshold()
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if args.callgrind:
                callgrind_instrumentation(True)
            collections = [g["collections"] for g in gc.get_stats()]
            gc_time = [0.0, 0.0, 0.0]  # total, the running collection's start, the longest

            def timed(phase: str, info: dict[str, int]) -> None:  # the collector's own time
                if phase == "start":
                    gc_time[1] = time.thread_time()
                else:
                    took = time.thread_time() - gc_time[1]
                    gc_time[0] += took
                    gc_time[2] = max(gc_time[2], took)

            gc.callbacks.append(timed)
            cpu, thread = time.process_time(), time.thread_time()
            usage = resource.getrusage(resource.RUSAGE_THREAD)  # the main thread's user and system time
            statuses = await drive(app, args.requests, args.concurrency)
            if obs is not None:
                await asyncio.to_thread(obs.tracing.force_flush, 30)
            cpu, thread = time.process_time() - cpu, time.thread_time() - thread
            after = resource.getrusage(resource.RUSAGE_THREAD)
            main_user, main_system = after.ru_utime - usage.ru_utime, after.ru_stime - usage.ru_stime
            faults = after.ru_minflt - usage.ru_minflt
            if args.callgrind:
                callgrind_instrumentation(False)
            bad = [s for s in statuses if s != 200]
            gc.callbacks.remove(timed)
            collections = [g["collections"] - n for g, n in zip(gc.get_stats(), collections, strict=True)]
            per_request = 1e6 / args.requests
            print(
                f"{args.mode}: {len(statuses)} requests, {len(bad)} not 200, "
                f"{cpu * per_request:.1f} µs CPU/request (main thread {thread * per_request:.1f}: user "
                f"{main_user * per_request:.1f}, system {main_system * per_request:.1f}, "
                f"{faults / args.requests:.2f} page faults); "
                f"collections by generation: {collections}, {gc_time[0] * per_request:.1f} µs/request, "
                f"the longest {gc_time[2] * 1e6:.0f} µs"
            )
            print(
                f"gc thresholds {gc.get_threshold()}, counts at the end {gc.get_count()}; peak RSS "
                f"{rss_before / 1024:.1f} MB before the measured requests, "
                f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB after; "
                f"now {current_rss_mb():.1f} MB"
            )
            if obs is not None:
                print(f"dropped {obs.tracing.dropped()}")
        burying.cancel()

    uvloop.run(run())
    container.close()


if __name__ == "__main__":
    main()
