"""Helpers the scale benchmarks share (imported as ``_common``: scripts run from this folder)."""

from __future__ import annotations

import os
import resource
import sys
import time


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def wait_for_quiet(threshold: float = 1.5, poll_s: float = 30.0, max_wait_s: float = 1200.0) -> str:
    """Wait until the 1-minute load average is below ``threshold``; returns a note for the report."""
    started = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        waited = time.monotonic() - started
        if load < threshold:
            return f"load {load:.2f} after waiting {waited:.0f}s"
        if waited >= max_wait_s:
            return f"load still {load:.2f} after {waited:.0f}s: ran anyway"
        print(f"  load average {load:.2f} >= {threshold}: waiting ({waited:.0f}s so far)", file=sys.stderr)
        time.sleep(poll_s)
