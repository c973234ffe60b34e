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
