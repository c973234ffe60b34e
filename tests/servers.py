"""Shared test helpers: ``groundwork serve``'s app under a real uvicorn on 127.0.0.1, a plain HTTP handler
on 127.0.0.1, and a failing model."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import uvicorn

from groundwork.api import create_app
from groundwork.api.server import server_config
from groundwork.container import Container
from groundwork.errors import UpstreamError
from groundwork.models.base import ChatModel
from groundwork.types import GenerationOptions, Message, StreamChunk


class CollectorHandler(http.server.BaseHTTPRequestHandler):
    """A quiet POST endpoint (an OTLP collector, a webhook): ``receive(body)`` sees each request's body,
    then the client gets an empty 200."""

    def receive(self, body: bytes) -> None:
        """Override: what the endpoint does with a request's body before it answers."""

    def do_POST(self) -> None:
        self.receive(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextlib.contextmanager
def serve_handler(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port (a thread per request); yields ``http://127.0.0.1:PORT``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serve(container: Container) -> Iterator[str]:
    """Run the gateway for ``container`` on a free port; yields its base URL, stops it at the end."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(container), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class BreaksMidway(ChatModel):
    """Yields two chunks, then fails like a dropped upstream connection."""

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        yield StreamChunk("Hello")
        yield StreamChunk(" world")
        raise UpstreamError("the upstream connection was reset")
