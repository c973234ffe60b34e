"""Running the app under uvicorn: one place for the settings ``groundwork serve`` and the tests use."""

from __future__ import annotations

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
