"""A misbehaving OpenAI-compatible upstream on 127.0.0.1 for fault-injection tests.

The behaviour is the first path segment: ``http://127.0.0.1:PORT/<behaviour>/v1/chat/completions``.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "The gateway answered this request."
WORDS = ANSWER.split(" ")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: dict[str, int]

    def log_message(self, *args: object) -> None:
        pass

    def _reset(self) -> None:
        """Abort the connection with a TCP RST."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _send(self, status: int, body: bytes, ctype: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def _completion(self) -> bytes:
        return json.dumps(
            {
                "id": "c1",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": len(WORDS)},
            }
        ).encode()

    def _stream(self, words: list[str], then: str = "done") -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        for i, w in enumerate(words):
            ev = {"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]}
            self.wfile.write(f"data: {json.dumps(ev)}\n\n".encode())
            self.wfile.flush()
        if then == "reset":
            time.sleep(0.02)
            self._reset()
            return
        usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(words)}}
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.close_connection = True

    def do_POST(self) -> None:
        behaviour = self.path.strip("/").split("/")[0]
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).hits[behaviour] = type(self).hits.get(behaviour, 0) + 1
        stream = bool(body.get("stream"))
        if behaviour.startswith("ok"):
            if behaviour.startswith("okslow"):
                time.sleep(float(behaviour[6:] or 50) / 1000)
            if stream:
                self._stream(WORDS)
            else:
                self._send(200, self._completion())
        elif behaviour == "e500":
            self._send(500, b'{"error": {"message": "internal error"}}')
        elif behaviour == "e429":
            self._send(429, b'{"error": {"message": "rate limited"}}', retry_after="0.3")
        elif behaviour == "e400":
            self._send(400, b'{"error": {"message": "messages[0].role is invalid"}}')
        elif behaviour == "toolong":
            self._send(400, b'{"error": {"message": "maximum context length is 4096 tokens"}}')
        elif behaviour == "hang":
            time.sleep(3)
            self._send(200, self._completion())
        elif behaviour == "reset":
            self._reset()
        elif behaviour == "badjson":
            if stream:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b"data: {this is not json\n\n")
                self.close_connection = True
            else:
                self._send(200, b"<html>this is not json</html>")
        elif behaviour == "cut":  # mid-way: a stream after two words, a body after half of it
            if stream:
                self._stream(WORDS[:2], then="reset")
            else:
                data = self._completion()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self._reset()
        elif behaviour == "empty":  # a stream with no text at all
            self._stream([])
        else:
            self._send(404, b'{"error": {"message": "unknown behaviour"}}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 stalls concurrent clients on SYN retries

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # resets and hang-ups are the point of this server


@contextmanager
def upstream() -> Iterator[tuple[str, dict[str, int]]]:
    """Start the server; yields its root URL and a dict counting hits per behaviour."""
    hits: dict[str, int] = {}
    handler = type("Handler", (_Handler,), {"hits": hits})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
