"""Helpers the scale benchmarks share (imported as ``_common``: scripts run from this folder)."""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any


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


def query_vector_embedder(dimensions: int) -> Any:
    """An embedder that returns its ``vector`` attribute for every text: queries with precomputed vectors.

    Set ``embedder.vector`` to the current query's vector before each search. Imports Groundwork when
    called, so scripts can set ``sys.path`` first.
    """
    import numpy as np

    from groundwork.models.base import EmbeddingModel, Vectors

    class QueryVectorEmbedder(EmbeddingModel):
        def __init__(self) -> None:
            self.name = "stub"
            self.dimensions = dimensions
            self.vector = np.zeros(dimensions, dtype=np.float32)

        def embed(self, texts: Sequence[str]) -> Vectors:
            return np.tile(self.vector, (len(texts), 1))

    return QueryVectorEmbedder()
