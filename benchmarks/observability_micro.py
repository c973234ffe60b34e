"""CPU per request of observability in process: ``ObservabilityMiddleware`` around a stub app, off vs on.

    PYTHONPATH=. .venv/bin/python benchmarks/observability_micro.py --requests 2000 --rounds 5

The stub app does what the gateway's path does to tracing on a non-streamed chat completion: opens one
child span (``model.attempt`` with group, deployment and attempt), sets the model's attributes on it
and answers 200. Each variant serves ``--requests`` requests through the middleware in a row, then
waits for its export queues to drain (``force_flush``), all inside the measured window: the CPU time of
the whole process (``time.process_time``, so the export threads count) divided by the requests. Rounds
interleave the variants in a shuffled order; the report is the median µs per request of each variant
and its cost over ``off``.

Variants: ``off`` (no observability: the middleware's plain path), ``metrics`` (``sample_ratio: 0``,
so metrics only), ``spans`` (every request traced, no exporter), ``store`` (the default: every request
traced into the local SQLite trace store) and, with ``--otlp``, ``store+otlp`` (also exported to an
OTLP/HTTP collector on 127.0.0.1 that answers 200 to everything, to show what building and encoding
OpenTelemetry SDK spans costs in the export thread). The same script runs against any checkout whose
middleware takes ``(app, observability, cache_enabled)``: run it with another ``PYTHONPATH`` to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groundwork.api.observability import ObservabilityMiddleware
from groundwork.config import ObservabilitySettings
from groundwork.observability import Observability
from groundwork.observability.tracing import span


async def stub_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    with span("model.attempt", group="bench", deployment="openai/bench", attempt=1) as s:
        s.set_attribute("gen_ai.request.model", "bench")
        s.set_attribute("gen_ai.usage.input_tokens", 12)
        s.set_attribute("gen_ai.usage.output_tokens", 9)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"json")]})
    await send({"type": "http.response.body", "body": b"{}"})


class _Collector(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


async def serve(mw: Any, n: int) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    for i in range(n):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": [(b"content-type", b"application/json")],
            "groundwork.request_id": f"req-{i}",
            "state": {},
        }
        await mw(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--otlp", action="store_true", help="add a variant exporting to a local collector")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="obs-micro-"))
    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{collector.server_address[1]}/v1/traces"
    configs: dict[str, dict[str, Any] | None] = {
        "off": None,
        "metrics": {"sample_ratio": 0.0, "trace_store": False},
        "spans": {"trace_store": False},
        "store": {},
    }
    if args.otlp:
        configs["store+otlp"] = {"otlp_endpoint": otlp}
    observabilities: dict[str, Observability | None] = {
        name: None if cfg is None else Observability(ObservabilitySettings(**cfg), work / name)
        for name, cfg in configs.items()
    }
    for name in observabilities:
        (work / name).mkdir(exist_ok=True)
    middlewares = {name: ObservabilityMiddleware(stub_app, o, False) for name, o in observabilities.items()}
    flushes: dict[str, Callable[[], object]] = {
        name: (lambda o=o: o.tracing.force_flush(30)) if o is not None else (lambda: None)
        for name, o in observabilities.items()
    }
    loop = asyncio.new_event_loop()
    for name, mw in middlewares.items():  # warm-up
        loop.run_until_complete(serve(mw, 200))
        flushes[name]()
    us: dict[str, list[float]] = {name: [] for name in middlewares}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(middlewares)
        rng.shuffle(order)
        for name in order:
            t0 = time.process_time()
            loop.run_until_complete(serve(middlewares[name], args.requests))
            flushes[name]()
            us[name].append((time.process_time() - t0) * 1e6 / args.requests)
    for o in observabilities.values():
        if o is not None:
            o.close()
    collector.shutdown()
    base = statistics.median(us["off"])
    print(f"- {args.rounds} rounds x {args.requests} requests per variant\n")
    print("| variant | µs CPU/request per round | median | over off |\n|---|---|---:|---:|")
    for name, values in us.items():
        med = statistics.median(values)
        extra = "-" if name == "off" else f"+{med - base:.1f}"
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {med:.1f} | {extra} |")


if __name__ == "__main__":
    main()
