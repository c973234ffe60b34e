"""Gateway throughput and added latency: direct vs Groundwork (``groundwork serve``) vs LiteLLM's proxy.

    .venv/bin/python benchmarks/gateway.py                      # everything, 8 s a point (~6 minutes)
    .venv/bin/python benchmarks/gateway.py --skip-litellm --duration 3      # quick run
    .venv/bin/python benchmarks/gateway.py --py-spy /work/litellm-venv/bin/py-spy   # + profile Groundwork
    .venv/bin/python benchmarks/gateway.py --skip-litellm --observability both   # tracing+metrics on vs off

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and, unless ``--skip-litellm``, LiteLLM's proxy in its
own venv, never in the project's (``python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip
install 'litellm[proxy]'``; ``--litellm`` names its ``litellm`` script). py-spy, for ``--py-spy``, goes in
a venv of its own too (``/work/litellm-venv/bin/pip install py-spy`` is fine).

One run, on this machine, everything on 127.0.0.1, against the same fast fake upstream
(``benchmarks/fake_upstream.py``, started once with this script's Python and kept for the whole run):

* **direct**: wrk against the upstream itself;
* **groundwork**: ``groundwork serve --config <tmp>/groundwork.yaml`` with one model group ``bench``
  (``provider: openai``, ``base_url`` = the upstream) and the fake embedder;
* **groundwork-obs-off** (with ``--observability off|both``): the same with ``observability: {enabled:
  false}`` (no tracing, no metrics); ``groundwork`` then has them on (the default: every request traced,
  spans exported to the local trace store). ``both`` measures off then on and adds a table of the cost;
* **litellm**: ``litellm --config <tmp>/litellm.yaml`` (``model: openai/bench``, ``api_base`` = the upstream,
  one worker, its defaults), with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` and a random master key.

For each target in turn (never two gateways at once), for non-streamed and streamed requests
(``benchmarks/wrk/chat.lua``, ``benchmarks/wrk/chat_stream.lua``) and each concurrency (``-c1,16,64``):
a ``--warmup`` wrk run, then ``wrk -t1 -cC -dDs --latency --timeout Ts`` whose ``Requests/sec`` and the
50% and 99% lines of its latency distribution are kept. A streamed request's latency is the time until
wrk has read the whole response (up to ``data: [DONE]``), not the time to the first token. Between runs
the script sleeps 1.5 times the previous run's backlog (connections / req/s, 0.3-10 s), so that the
requests wrk left queued in the server have drained. "Added" latency is the target's
percentile minus direct's at the same concurrency (a difference of percentiles, not a percentile of
differences). wrk's ``Non-2xx or 3xx responses`` and ``Socket errors`` lines are reported as errors.

Before the load runs, ``--samples`` sequential requests per mode go through each target with
``http.client`` (one keep-alive connection) to check the answer (status 200, the upstream's text,
``[DONE]`` at the end of a stream), to collect Groundwork's ``x-groundwork-overhead-ms`` and
``x-request-id`` headers, and to count the connections the upstream saw for them (``GET /stats``): a
gateway that reuses its upstream connections opens one or two, not one per request.

CPU placement (2 cores): by default the upstream is pinned to CPU 0 and the gateway under test to CPU 1
with ``taskset``; wrk is not pinned and shares both. ``--no-pin`` leaves everything to the scheduler.

With ``--py-spy``, after Groundwork's measured runs, a wrk run at the highest concurrency (64),
non-streamed unless ``--profile-mode stream``, is profiled twice (``py-spy record --format raw`` to count
functions by own time, and a flame graph SVG) and the summary is printed; the files land in
``--profile-dir``.

Every process started is stopped at the end, whatever happens (process groups, SIGTERM then SIGKILL).
The report is markdown on stdout (``--output`` also writes it to a file, ``--json`` the raw points);
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WRK_SCRIPTS = {"non-stream": HERE / "wrk" / "chat.lua", "stream": HERE / "wrk" / "chat_stream.lua"}
MODES = ("non-stream", "stream")
EXPECTED_TEXT = "Hello! How can I help you today?"  # fake_upstream.ANSWER_PARTS joined
CHAT_PATH = "/v1/chat/completions"
HOST = "127.0.0.1"

TARGET_THROUGHPUT_RATIO = 0.30
"""Groundwork at the highest concurrency must reach at least this share of direct's req/s."""
TARGET_ADDED_P50_MS = 1.0
"""Groundwork's added p50 at concurrency 1 must be at most this."""


# --------------------------------------------------------------------------------------------- processes


class Processes:
    """Starts servers in their own process groups, logs each to a file, and stops them all."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None, cpu: str | None = None
    ) -> subprocess.Popen[bytes]:
        command = list(argv)
        if cpu is not None:
            command = ["taskset", "-c", cpu, *command]  # taskset execs: the pid is the server's
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.log_dir
        )
        self.running.append((name, proc, log))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        for entry in list(self.running):
            if entry[1] is proc:
                self.running.remove(entry)
                _terminate(proc)
                entry[2].close()

    def stop_all(self) -> None:
        while self.running:
            self.stop(self.running[-1][1])


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    else:  # the leader is gone; children it left in the group may not be
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(
    procs: Processes,
    name: str,
    proc: subprocess.Popen[bytes],
    url: str,
    headers: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> float:
    """Poll ``url`` until it answers 200; the seconds it took. Fails fast if the process exits."""
    start = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as resp:
                if resp.status == 200:
                    return time.perf_counter() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
            pass
        if time.perf_counter() - start > timeout_s:
            raise RuntimeError(f"{name} not ready after {timeout_s:.0f}s:\n{procs.log_tail(name)}")
        time.sleep(0.2)


# -------------------------------------------------------------------------------------------------- wrk


@dataclass
class Point:
    """One wrk run."""

    target: str
    mode: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> str:
        parts = [f"{self.non_2xx} non-2xx"] if self.non_2xx else []
        parts += [f"{n} {kind}" for kind, n in self.socket_errors.items() if n]
        return ", ".join(parts) or "none"


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests/sec, the 50/75/90/99% latencies (ms), totals and error counts from wrk's output."""
    rps = _RPS.search(text)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk's output:\n{text}")
    percentiles = {int(p): float(v) * _UNIT_MS[u] for p, v, u in _PERCENTILE.findall(text)}
    total = _TOTAL.search(text)
    non_2xx = _NON_2XX.search(text)
    sock = _SOCKET.search(text)
    return {
        "rps": float(rps.group(1)),
        "percentiles_ms": percentiles,
        "requests": int(total.group(1)) if total else 0,
        "seconds": float(total.group(2)) * _UNIT_MS[total.group(3)] / 1e3 if total else 0.0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
        if sock
        else {},
    }


def wrk_command(url: str, mode: str, concurrency: int, seconds: float, timeout_s: float) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(WRK_SCRIPTS[mode]),
        url,
    ]


def run_wrk(
    target: str, url: str, key: str, mode: str, concurrency: int, seconds: float, timeout_s: float
) -> Point:
    env = {**os.environ, "BENCH_API_KEY": key}
    argv = wrk_command(url, mode, concurrency, seconds, timeout_s)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + timeout_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    parsed = parse_wrk(done.stdout)
    pct = parsed["percentiles_ms"]
    return Point(
        target=target,
        mode=mode,
        concurrency=concurrency,
        rps=parsed["rps"],
        p50_ms=pct.get(50, math.nan),
        p99_ms=pct.get(99, math.nan),
        requests=parsed["requests"],
        seconds=parsed["seconds"],
        non_2xx=parsed["non_2xx"],
        socket_errors=parsed["socket_errors"],
    )


def settle(point: Point) -> None:
    """Wait for the requests a finished run left queued in the server (wrk closes, the server goes on)."""
    backlog_s = point.concurrency / max(point.rps, 1.0)
    time.sleep(min(10.0, max(0.3, 1.5 * backlog_s) + (2.0 if point.socket_errors.get("timeout") else 0.0)))


# ---------------------------------------------------------------------------------------- sample checks


@dataclass
class Sample:
    """Sequential requests through one target with ``http.client``: answers checked, headers collected."""

    target: str
    mode: str
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    wrong_answers: int = 0
    first_problem: str = ""
    overhead_ms: list[float] = field(default_factory=list)
    request_ids: int = 0
    unique_request_ids: int = 0
    client_ms: list[float] = field(default_factory=list)
    upstream_requests: int = -1
    upstream_connections: int = -1


def _answer_problem(mode: str, status: int, body: bytes) -> str:
    """Why a response is not the upstream's answer (empty when it is)."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if mode == "non-stream":
        try:
            text = json.loads(body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return f"not a chat.completion: {body[:200]!r}"
        return "" if text == EXPECTED_TEXT else f"wrong text {text!r}"
    events = [
        line[5:].strip() for line in body.decode(errors="replace").splitlines() if line.startswith("data:")
    ]
    if not events or events[-1] != "[DONE]":
        return f"stream does not end with [DONE]: {body[-200:]!r}"
    text = ""
    try:
        for event in events[:-1]:
            for choice in json.loads(event).get("choices") or []:
                text += (choice.get("delta") or {}).get("content") or ""
    except (ValueError, AttributeError) as exc:
        return f"bad stream event ({exc}): {body[:200]!r}"
    return "" if text == EXPECTED_TEXT else f"wrong streamed text {text!r}"


def sample(target: str, port: int, key: str, mode: str, n: int) -> Sample:
    body = json.dumps(
        {"model": "bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
        | ({"stream": True} if mode == "stream" else {})
    ).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    result = Sample(target, mode)
    statuses: Counter[int] = Counter()
    ids: set[str] = set()
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        for _ in range(n):
            start = time.perf_counter()
            conn.request("POST", CHAT_PATH, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            result.client_ms.append((time.perf_counter() - start) * 1e3)
            statuses[resp.status] += 1
            problem = _answer_problem(mode, resp.status, data)
            if problem:
                result.wrong_answers += 1
                result.first_problem = result.first_problem or problem
            overhead = resp.getheader("x-groundwork-overhead-ms")
            if overhead is not None:
                result.overhead_ms.append(float(overhead))
            rid = resp.getheader("x-request-id")
            if rid is not None:
                result.request_ids += 1
                ids.add(rid)
    finally:
        conn.close()
    result.requests = n
    result.statuses = dict(statuses)
    result.unique_request_ids = len(ids)
    return result


# ---------------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    port: int
    key: str = ""
    proc: subprocess.Popen[bytes] | None = None


def start_upstream(procs: Processes, python: str, cpu: str | None) -> Target:
    port = free_port()
    argv = [python, str(HERE / "fake_upstream.py"), "--host", HOST, "--port", str(port)]
    proc = procs.start("upstream", argv, cpu=cpu)
    wait_ready(procs, "upstream", proc, f"http://{HOST}:{port}/v1/models", timeout_s=30)
    return Target("direct", port, proc=proc)


def _clean_env() -> dict[str, str]:
    """This environment without GROUNDWORK_* overrides, so the benchmark's config file is what counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GROUNDWORK_")}


def start_groundwork(
    procs: Processes,
    binary: str,
    work: Path,
    upstream: int,
    cpu: str | None,
    observability: bool = True,
    sample_ratio: float = 1.0,
    name: str | None = None,
    pythonpath: str | None = None,
    observability_extra: str = "",
) -> Target:
    port = free_port()
    name = name or ("groundwork" if observability else "groundwork-obs-off")
    config = work / f"{name}.yaml"
    config.write_text(
        f"data_dir: {work / name}\n"
        f"observability: {{enabled: {str(observability).lower()}, sample_ratio: {sample_ratio}"
        f"{', ' + observability_extra if observability_extra else ''}}}\n"
        "embeddings: {provider: fake}\n"
        # dev mode, as measured before API keys existed (issue 6): keys and guards add ~0.1 ms a request
        "security: {auth: false}\n"
        "models:\n"
        "  default_group: bench\n"
        "  groups:\n"
        f"    bench: [{{provider: openai, model: bench, base_url: 'http://{HOST}:{upstream}/v1'}}]\n"
    )
    argv = [binary, "serve", "--host", HOST, "--port", str(port), "--config", str(config)]
    env = _clean_env()
    if pythonpath is not None:  # e.g. another checkout of the package, to measure old code side by side
        env["PYTHONPATH"] = pythonpath
    proc = procs.start(name, argv, env=env, cpu=cpu)
    took = wait_ready(procs, name, proc, f"http://{HOST}:{port}/v1/models", timeout_s=120)
    print(f"{name} ready after {took:.1f}s (pid {proc.pid}, port {port})", file=sys.stderr)
    return Target(name, port, proc=proc)


def start_litellm(procs: Processes, binary: str, work: Path, upstream: int, cpu: str | None) -> Target:
    port = free_port()
    key = "sk-bench-" + secrets.token_hex(16)
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params:\n"
        "      model: openai/bench\n"
        f"      api_base: http://{HOST}:{upstream}/v1\n"
        "      api_key: x\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_MASTER_KEY": key}
    argv = [binary, "--config", str(config), "--host", HOST, "--port", str(port)]
    proc = procs.start("litellm", argv, env=env, cpu=cpu)
    auth = {"authorization": f"Bearer {key}"}
    took = wait_ready(procs, "litellm", proc, f"http://{HOST}:{port}/v1/models", auth, timeout_s=180)
    print(f"litellm ready after {took:.1f}s (pid {proc.pid}, port {port})", file=sys.stderr)
    return Target("litellm", port, key=key, proc=proc)


def upstream_stats(port: int, reset: bool = False) -> dict[str, int]:
    """The fake upstream's request and connection counts (``reset``: zero them)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}/stats" + ("/reset" if reset else ""), method="POST" if reset else "GET"
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return dict(json.loads(resp.read()))


def measure(
    target: Target, upstream: int, args: argparse.Namespace, points: list[Point], samples: list[Sample]
) -> None:
    """Sample checks, then every mode x concurrency with wrk, for one running target."""
    url = f"http://{HOST}:{target.port}{CHAT_PATH}"
    for mode in MODES:
        upstream_stats(upstream, reset=True)
        s = sample(target.name, target.port, target.key, mode, args.samples)
        stats = upstream_stats(upstream)
        s.upstream_requests, s.upstream_connections = stats["requests"], stats["connections"]
        samples.append(s)
        if s.wrong_answers:
            print(
                f"  {target.name} {mode}: {s.wrong_answers} wrong answers: {s.first_problem}", file=sys.stderr
            )
    for mode in MODES:
        for c in args.concurrency:
            if args.warmup > 0:
                settle(run_wrk(target.name, url, target.key, mode, c, args.warmup, args.wrk_timeout))
            point = run_wrk(target.name, url, target.key, mode, c, args.duration, args.wrk_timeout)
            points.append(point)
            print(
                f"  {target.name:10} {mode:10} c={c:<3} {point.rps:9.1f} req/s  p50 {point.p50_ms:9.3f} ms"
                f"  p99 {point.p99_ms:9.3f} ms  errors: {point.errors}",
                file=sys.stderr,
            )
            settle(point)


# ---------------------------------------------------------------------------------------------- profile


@dataclass
class Profile:
    mode: str
    concurrency: int
    samples: int
    other_threads: int
    seconds: float
    rate: int
    rps: float
    own_by_function: list[tuple[str, int]]
    own_by_package: list[tuple[str, int]]
    inclusive_groundwork: list[tuple[str, int]]
    inclusive_below_handler: list[tuple[str, int]]
    files: list[str]


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _frame_key(frame: str) -> tuple[str, str]:
    """``(function, file)`` of one py-spy raw frame ``func (file:line)``."""
    m = _FRAME.match(frame.strip())
    return (m.group("func"), m.group("file")) if m else (frame.strip(), "")


def _package(path: str) -> str:
    """The top-level package (or stdlib module) a source file belongs to."""
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    if "/groundwork/" in path:
        return "groundwork." + path.split("/groundwork/", 1)[1].split("/", 1)[0].removesuffix(".py")
    m = re.search(r"/python3\.\d+/(.*)$", path)
    if m:
        return "stdlib:" + m.group(1).split("/", 1)[0].removesuffix(".py")
    return path or "?"


@dataclass
class RawSummary:
    """py-spy raw stacks of the main (event loop) thread, counted; other threads only totalled."""

    samples: int = 0
    other_threads: int = 0
    own_fn: Counter[str] = field(default_factory=Counter)
    own_pkg: Counter[str] = field(default_factory=Counter)
    incl_gw: Counter[str] = field(default_factory=Counter)
    incl_all: Counter[str] = field(default_factory=Counter)


def summarize_raw(text: str) -> RawSummary:
    """Own samples by function and by package, and inclusive samples of groundwork code, main thread only.

    Stacks rooted in ``threading``'s ``_bootstrap`` belong to worker threads (e.g. the idle thread pool
    worker left by a startup ``asyncio.to_thread``, which py-spy does not always see as idle): they are
    only counted in ``other_threads``.
    """
    summary = RawSummary()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_key(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if f[1]]  # drop the thread/process label frames
        if not frames:
            continue
        if frames[0][0].endswith("_bootstrap") and frames[0][1].endswith("threading.py"):
            summary.other_threads += count
            continue
        summary.samples += count
        func, path = frames[-1]
        summary.own_fn[f"{func} ({_package(path)}: {Path(path).name})"] += count
        summary.own_pkg[_package(path)] += count
        for func, path in set(frames):
            summary.incl_all[f"{func} ({_package(path)}: {Path(path).name})"] += count
            if "/groundwork/" in path and "site-packages" not in path:
                summary.incl_gw[f"{func} ({Path(path).name})"] += count
    return summary


def profile_groundwork(target: Target, args: argparse.Namespace) -> Profile:
    """py-spy on the gateway during a wrk run (``--profile-mode``) at the highest concurrency."""
    assert target.proc is not None
    out = Path(args.profile_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{target.port}{CHAT_PATH}"
    c = max(args.concurrency)
    seconds = max(3, round(args.duration))
    rate = 100
    files: list[str] = []
    rps = math.nan
    mode = args.profile_mode
    raw_name = f"groundwork-{mode}-c{c}.raw.txt"
    for fmt, name in (("raw", raw_name), ("flamegraph", f"groundwork-{mode}-c{c}.svg")):
        argv = wrk_command(url, mode, c, seconds + 2, args.wrk_timeout)
        wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(1.0)
            spy = [args.py_spy, "record", "--pid", str(target.proc.pid), "--rate", str(rate)]
            spy += ["--duration", str(seconds), "--format", fmt, "--full-filenames", "-o", str(out / name)]
            subprocess.run(spy, capture_output=True, check=True, timeout=seconds + 60)
        finally:
            wrk_out, _ = wrk.communicate(timeout=seconds + args.wrk_timeout + 60)
        if fmt == "raw":
            rps = parse_wrk(wrk_out)["rps"]
        files.append(str(out / name))
        time.sleep(2.0)
    summary = summarize_raw((out / raw_name).read_text())
    return Profile(
        mode=mode,
        concurrency=c,
        samples=summary.samples,
        other_threads=summary.other_threads,
        seconds=seconds,
        rate=rate,
        rps=rps,
        own_by_function=summary.own_fn.most_common(20),
        own_by_package=summary.own_pkg.most_common(15),
        inclusive_groundwork=summary.incl_gw.most_common(15),
        inclusive_below_handler=[
            (name, n)
            for name, n in summary.incl_all.most_common()
            if n < 0.8 * summary.samples and "groundwork" not in name
        ][:20],
        files=files,
    )


# ----------------------------------------------------------------------------------------------- report


def _version(python: str, *dists: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = '-'\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([python, "-c", code, *dists], capture_output=True, text=True, timeout=60)
        return dict(json.loads(done.stdout))
    except (OSError, ValueError, subprocess.SubprocessError):
        return dict.fromkeys(dists, "?")


def environment(args: argparse.Namespace) -> dict[str, str]:
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "wrk": _first_line(wrk.stdout or wrk.stderr).split(" [")[0].removeprefix("wrk "),
    }
    gw_python = str(Path(args.groundwork).parent / "python")
    info |= _version(
        gw_python, "groundwork", "fastapi", "starlette", "uvicorn", "httpx", "pydantic", "uvloop"
    )
    if not args.skip_litellm:
        info["litellm"] = _version(str(Path(args.litellm).parent / "python"), "litellm")["litellm"]
    return info


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text.strip() else "?"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _find(points: Sequence[Point], target: str, mode: str, c: int) -> Point | None:
    return next((p for p in points if (p.target, p.mode, p.concurrency) == (target, mode, c)), None)


def _ratio(a: Point | None, b: Point | None) -> str:
    return f"{a.rps / b.rps:.3f}" if a and b and b.rps > 0 else "-"


def results_table(points: Sequence[Point], concurrency: Sequence[int]) -> list[str]:
    lines = [
        "| target | mode | c | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target in ("direct", "groundwork-obs-off", "groundwork", "litellm"):
        for mode in MODES:
            for c in concurrency:
                p = _find(points, target, mode, c)
                if p is None:
                    continue
                d = _find(points, "direct", mode, c)
                added50 = p.p50_ms - d.p50_ms if d and target != "direct" else math.nan
                added99 = p.p99_ms - d.p99_ms if d and target != "direct" else math.nan
                cells = [target, mode, str(c), _fmt(p.rps, 1), _fmt(p.p50_ms, 3), _fmt(p.p99_ms, 3)]
                cells += [_fmt(added50, 3), _fmt(added99, 3), p.errors]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def ratio_table(points: Sequence[Point], concurrency: Sequence[int]) -> list[str]:
    lines = [
        "| mode | c | Groundwork / direct | Groundwork / LiteLLM | LiteLLM / direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        for c in concurrency:
            gw, d, ll = (_find(points, t, mode, c) for t in ("groundwork", "direct", "litellm"))
            lines.append(f"| {mode} | {c} | {_ratio(gw, d)} | {_ratio(gw, ll)} | {_ratio(ll, d)} |")
    return lines


def observability_table(points: Sequence[Point], concurrency: Sequence[int]) -> list[str]:
    """Throughput with tracing and metrics on vs off (``--observability both``); empty otherwise."""
    lines = [
        "| mode | c | obs off req/s | obs on req/s | on / off | cost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        for c in concurrency:
            on, off = _find(points, "groundwork", mode, c), _find(points, "groundwork-obs-off", mode, c)
            if on is None or off is None or off.rps <= 0:
                continue
            ratio = on.rps / off.rps
            lines.append(
                f"| {mode} | {c} | {off.rps:,.1f} | {on.rps:,.1f} | {ratio:.3f} | {(1 - ratio) * 100:.1f}% |"
            )
    return lines if len(lines) > 2 else []


def verdicts(points: Sequence[Point], concurrency: Sequence[int]) -> list[str]:
    lines: list[str] = []
    low, high = min(concurrency), max(concurrency)
    for mode in MODES:
        d1, g1, l1 = (_find(points, t, mode, low) for t in ("direct", "groundwork", "litellm"))
        if d1 and g1:
            added = g1.p50_ms - d1.p50_ms
            ok = "met" if added <= TARGET_ADDED_P50_MS else "**missed**"
            extra = f"; LiteLLM added {l1.p50_ms - d1.p50_ms:.3f} ms" if l1 else ""
            lines.append(
                f"- {mode}, added p50 at c={low}: Groundwork {added:.3f} ms "
                f"(target ≤ {TARGET_ADDED_P50_MS:g} ms: {ok}){extra}"
            )
        dh, gh = _find(points, "direct", mode, high), _find(points, "groundwork", mode, high)
        if dh and gh:
            ratio = gh.rps / dh.rps if dh.rps else math.nan
            ok = "met" if ratio >= TARGET_THROUGHPUT_RATIO else "**missed**"
            lines.append(
                f"- {mode}, throughput at c={high}: Groundwork {gh.rps:,.1f} req/s = {ratio:.1%} of direct's "
                f"{dh.rps:,.1f} (target ≥ {TARGET_THROUGHPUT_RATIO:.0%}: {ok})"
            )
    return lines


def samples_table(samples: Sequence[Sample]) -> list[str]:
    lines = [
        "| target | mode | requests | statuses | wrong answers | client p50 ms | upstream requests / conns "
        "| x-groundwork-overhead-ms p50 / p99 / max | x-request-id (unique) |",
        "|---|---|---:|---|---:|---:|---|---|---|",
    ]
    for s in samples:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items()))
        overhead = "-"
        if s.overhead_ms:
            q = sorted(s.overhead_ms)
            p99 = q[min(len(q) - 1, math.ceil(0.99 * len(q)) - 1)]
            overhead = f"{statistics.median(q):.3f} / {p99:.3f} / {q[-1]:.3f}"
        ids = f"{s.request_ids} ({s.unique_request_ids})" if s.request_ids else "-"
        wrong = f"{s.wrong_answers} ({s.first_problem[:60]})" if s.wrong_answers else "0"
        client = _fmt(statistics.median(s.client_ms), 3) if s.client_ms else "-"
        upstream = f"{s.upstream_requests} / {s.upstream_connections}" if s.upstream_requests >= 0 else "-"
        cells = [s.target, s.mode, str(s.requests), statuses, wrong, client, upstream, overhead, ids]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def profile_lines(p: Profile) -> list[str]:
    busy = p.samples / (p.rate * p.seconds) if p.seconds else math.nan
    lines = [
        f"py-spy {p.rate} Hz for {p.seconds:.0f} s during wrk c={p.concurrency} {p.mode} "
        f"({_fmt(p.rps, 1)} req/s while sampled): {p.samples} non-idle samples of the main (event loop) "
        f"thread, so it was busy ~{busy:.0%} of the time ({p.other_threads} samples of other threads are "
        "left out). Shares below are of the main thread's samples.",
        "",
        "| own time by package | samples | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {n} | {n / p.samples:.1%} |" for name, n in p.own_by_package]
    lines += ["", "| own time by function (top 20) | samples | share |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {n} | {n / p.samples:.1%} |" for name, n in p.own_by_function]
    lines += ["", "| Groundwork functions, inclusive | samples | share |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {n} | {n / p.samples:.1%} |" for name, n in p.inclusive_groundwork]
    lines += ["", "| other code, inclusive (under 80% of samples, top 20) | samples | share |"]
    lines += ["|---|---:|---:|"]
    lines += [f"| `{name}` | {n} | {n / p.samples:.1%} |" for name, n in p.inclusive_below_handler]
    lines += ["", "Files: " + ", ".join(f"`{f}`" for f in p.files)]
    return lines


def report(
    info: dict[str, str],
    args: argparse.Namespace,
    points: Sequence[Point],
    samples: Sequence[Sample],
    profile: Profile | None,
    loads: dict[str, str],
) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("date", "nproc", "cpu"))
    pin = "upstream on CPU 0, gateway on CPU 1 (taskset), wrk unpinned" if args.pin else "no pinning"
    lines = [
        f"- **Date:** {info['date']}; **machine:** nproc {info['nproc']}, {info['cpu']}",
        f"- **Versions:** {versions}",
        f"- **Command:** `{' '.join(args.argv)}`",
        f"- **Method:** wrk -t1, {args.duration:g} s a point after a {args.warmup:g} s warm-up, timeout "
        f"{args.wrk_timeout:g} s; {pin}; load average {', '.join(f'{k}: {v}' for k, v in loads.items())}",
        "",
        *results_table(points, args.concurrency),
        "",
        *ratio_table(points, args.concurrency),
        "",
        *observability_table(points, args.concurrency),
        "",
        *verdicts(points, args.concurrency),
        "",
        f"Sequential checks ({args.samples} requests per mode, `http.client`, before the load):",
        "",
        *samples_table(samples),
    ]
    if profile is not None:
        lines += ["", *profile_lines(profile)]
    return "\n".join(lines) + "\n"


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


# ------------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each measured wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of the warm-up before each point")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated wrk connection counts")
    parser.add_argument("--wrk-timeout", type=float, default=10.0, help="wrk's per-request timeout (s)")
    parser.add_argument("--samples", type=int, default=200, help="sequential checked requests per mode")
    parser.add_argument("--skip-litellm", action="store_true", help="measure direct and Groundwork only")
    parser.add_argument("--skip-groundwork", action="store_true", help="measure direct and LiteLLM only")
    parser.add_argument(
        "--observability",
        choices=["on", "off", "both"],
        default="on",
        help="Groundwork with tracing and metrics on (the default config), off, or both side by side",
    )
    parser.add_argument(
        "--sample-ratio", type=float, default=1.0, help="observability.sample_ratio of Groundwork (default 1)"
    )
    parser.add_argument("--litellm", default="/work/litellm-venv/bin/litellm", help="LiteLLM's script")
    parser.add_argument("--groundwork", default=str(ROOT / ".venv" / "bin" / "groundwork"))
    parser.add_argument("--python", default=sys.executable, help="Python for the fake upstream")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no taskset pinning")
    parser.add_argument("--py-spy", default=None, help="py-spy binary: profile Groundwork at c=64")
    parser.add_argument("--profile-dir", default="/tmp/gateway-profile")
    parser.add_argument("--profile-mode", choices=MODES, default="non-stream", help="what --py-spy loads")
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    parser.add_argument("--json", default=None, help="write the raw points and samples here")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.argv = ["benchmarks/gateway.py", *(sys.argv[1:] if argv is None else argv)]
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install -y wrk)")
    if not args.skip_litellm and not Path(args.litellm).exists():
        parser.error(f"{args.litellm} not found: install LiteLLM's proxy in its own venv, or --skip-litellm")
    return args


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        yield Path(tmp)


def run(args: argparse.Namespace) -> str:
    info = environment(args)
    points: list[Point] = []
    samples: list[Sample] = []
    loads = {"start": _loadavg()}
    profile: Profile | None = None
    with _workdir() as work:
        procs = Processes(work)
        try:
            upstream = start_upstream(procs, args.python, "0" if args.pin else None)
            gateway_cpu = "1" if args.pin else None
            print(f"upstream on port {upstream.port}; logs in {work}", file=sys.stderr)
            measure(upstream, upstream.port, args, points, samples)
            variants = {"on": [True], "off": [False], "both": [False, True]}[args.observability]
            for observability in variants if not args.skip_groundwork else []:
                gw = start_groundwork(
                    procs, args.groundwork, work, upstream.port, gateway_cpu, observability, args.sample_ratio
                )
                measure(gw, upstream.port, args, points, samples)
                if args.py_spy and observability:
                    profile = profile_groundwork(gw, args)
                assert gw.proc is not None
                procs.stop(gw.proc)
                loads[f"after {gw.name}"] = _loadavg()
            if not args.skip_litellm:
                ll = start_litellm(procs, args.litellm, work, upstream.port, gateway_cpu)
                measure(ll, upstream.port, args, points, samples)
                assert ll.proc is not None
                procs.stop(ll.proc)
                loads["after litellm"] = _loadavg()
        finally:
            procs.stop_all()
    loads["end"] = _loadavg()
    if args.json:
        raw: dict[str, Any] = {"info": info, "points": [asdict(p) for p in points]}
        raw["samples"] = [asdict(s) for s in samples]
        raw["profile"] = asdict(profile) if profile else None
        Path(args.json).write_text(json.dumps(raw, indent=2))
    return report(info, args, points, samples, profile, loads)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    text = run(args)
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
