"""Test helper: several ``groundwork serve`` processes (replicas) on one configuration, on free ports.

Each replica is a real OS process started like an operator would (``groundwork serve --config ...
--port ...``) with its own data dir; what they share is what the configuration points at (PostgreSQL,
Redis). :func:`replicas` yields their base URLs once every ``/readyz`` answers, and stops them at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
_LAUNCH = "from groundwork.cli.main import main; main()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"replica {url} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"replica {url} was not ready within {timeout_s}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def replicas(config: Path, workdir: Path, count: int = 2, timeout_s: float = 60.0) -> Iterator[list[str]]:
    """Start ``count`` replicas of ``groundwork serve --config config``; yields their base URLs."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for n in range(count):
            port = _free_port()
            log = workdir / f"replica-{n}.log"
            data = workdir / f"replica-{n}"
            cmd = [sys.executable, "-c", _LAUNCH, "serve", "--config", str(config), "--port", str(port)]
            cmd += ["--data-dir", str(data)]
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
            started.append((proc, f"http://127.0.0.1:{port}", log))
        for proc, url, log in started:
            _wait_ready(url, proc, log, timeout_s)
        yield [url for _, url, _ in started]
    finally:
        for proc, _, _ in started:
            proc.terminate()
        for proc, _, _ in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
