"""One pooled aiohttp session shared by every HTTP provider, one per event loop.

aiohttp rather than httpx on the hot path: measured through `benchmarks/gateway.py`, httpx's
connection pool walked every pooled connection on each request and took about three quarters of the
gateway's CPU at 64 concurrent requests (encode/httpcore#924, #1035). A connection pool belongs to the
event loop that opened it; the server runs one loop for its life while the CLI may run several in
turn, so sessions are keyed by the running loop.
"""

from __future__ import annotations

import asyncio
import weakref

import aiohttp


class SharedSession:
    """Hands out the pooled :class:`aiohttp.ClientSession` of the running event loop."""

    def __init__(self, limit: int = 512, keepalive_s: float = 30.0) -> None:
        self.limit = limit
        self.keepalive_s = keepalive_s
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.limit, keepalive_timeout=self.keepalive_s, enable_cleanup_closed=True
            )
            # Deadlines are set per request by the caller; no session-wide timeout.
            session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
            )
            self._sessions[loop] = session
        return session

    def open_connections(self) -> int:
        """Connections the pools hold, idle or in use, over every loop's session (for the metrics)."""
        total = 0
        for session in list(self._sessions.values()):
            connector = session.connector
            if connector is None or session.closed:
                continue
            idle = getattr(connector, "_conns", {})  # aiohttp keeps no public count
            total += sum(len(v) for v in idle.values()) + len(getattr(connector, "_acquired", ()))
        return total

    async def aclose(self) -> None:
        """Close the session of the running loop."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()
