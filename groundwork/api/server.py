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


def freeze_startup_heap() -> int:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``); how many.

    Called by ``groundwork serve`` once the app is built, before it serves. The modules, settings,
    models and routes built at start-up live as long as the process, yet every full collection walked
    them all again (and objects that outlive requests, such as span records waiting for their export
    batch, keep starting full collections). A non-streamed chat completion at 16 concurrent requests
    took some 30-50 µs of CPU less, tracing on or off (``benchmarks/RESULTS.md``). Garbage found now
    is collected first; frozen objects are still freed when their last reference goes, only reference
    cycles among them are not.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


GC_YOUNG_THRESHOLD = 10_000
"""The youngest generation's collection threshold ``groundwork serve`` sets (Python's default: 700)."""


def raise_gc_threshold(young: int = GC_YOUNG_THRESHOLD) -> tuple[int, int, int]:
    """Collect the youngest generation every ``young`` net allocations instead of 700; the thresholds.

    Called by ``groundwork serve`` after ``freeze_startup_heap``. Whatever the threshold, a young
    collection walks much of what the requests in flight hold (their coroutines' frames above all), so
    at 16 concurrent requests one cost ~1.2M instructions with the default 700, and span records
    waiting in the export queues set off almost three times as many of them. With 10,000 (the real app
    in process, fake model, 16 concurrent requests, ``benchmarks/observability_app.py``; see
    ``benchmarks/RESULTS.md``, "GC threshold for the gateway"): the collector's own time per request
    fell from 2.2 to 0.3 µs with tracing off and from 7.4 to 0.7 µs with tracing on (medians of 8 runs
    of 24,000 requests; 2.9 -> 0.5 and 9.8 -> 1.2 over 100,000), and under callgrind from 4.3K to 0.4K
    and from 13.3K to 1.2K instructions a request, which takes tracing's cost from +8.5% to +7.8% of
    the instructions. Peak RSS did not change (within 1.3 MB of ~125-147 MB), and the longest
    collection measured was shorter (the long ones, of the older generations, now come ~14 times less
    often). Garbage in reference cycles waits longer, for up to ``young`` net allocations of container
    objects. The older generations keep their thresholds.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)
    return gc.get_threshold()
