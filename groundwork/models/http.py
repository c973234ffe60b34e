"""One pooled httpx client shared by every HTTP provider, one per event loop.

httpx connection pools belong to the event loop that opened them; the server runs one loop for its
life, while the CLI may run several in turn, so the client is keyed by the running loop.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx

DEFAULT_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=256, keepalive_expiry=30)


class SharedHttpClient:
    """Hands out the pooled ``httpx.AsyncClient`` of the running event loop."""

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Per-request timeouts are set by each call; this default only guards against a forgotten one.
            client = httpx.AsyncClient(limits=self.limits, timeout=httpx.Timeout(600.0))
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the client of the running loop."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
