"""Running the app under uvicorn: one place for the settings ``groundwork serve`` and the tests use."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI


def server_config(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8080, *, access_log: bool = False
) -> uvicorn.Config:
    """uvicorn settings for the gateway: uvloop and httptools when installed, no access log by default."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",
        http="auto",
        ws="none",
        interface="asgi3",
        lifespan="on",
        access_log=access_log,
        log_level="info",
        server_header=False,
    )


GC_THRESHOLD0 = 7_000
"""Container objects allocated (net) between two young-generation collections while serving (CPython's
default is 700)."""


def tune_gc_for_serving() -> int:
    """Set up the garbage collector for a long-running server; how many objects were frozen.

    Called by ``groundwork serve`` once the app is built, before it serves:

    * ``gc.freeze()``: the modules, settings, models and routes built at start-up live as long as the
      process, yet every full collection walked them all again. Garbage found now is collected first;
      frozen objects are still freed when their last reference goes, only cycles among them are not.
    * a young generation of :data:`GC_THRESHOLD0` objects instead of 700: at 16 concurrent requests a
      young collection walks every live object of the requests in flight, so it cost ~100 µs, about
      every fifth request; objects that outlive a request for a while (span records waiting for their
      export batch) made them more frequent still.

    At 16 concurrent non-streamed chat completions the two together took some 30-50 µs of CPU off a
    request with tracing off and 60-80 µs with it on (``benchmarks/RESULTS.md``). Memory: at most that
    many more young objects wait for a collection; those freed by reference counting never do.
    """
    gc.collect()
    gc.freeze()
    _, threshold1, threshold2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, threshold1, threshold2)
    return gc.get_freeze_count()
