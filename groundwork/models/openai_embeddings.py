"""Embeddings from any OpenAI-compatible server (``POST {base_url}/embeddings``).

Vectors are L2-normalised here, whatever the server does, because the stores search by inner product.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import httpx
import numpy as np
import orjson

from groundwork.errors import ConfigError, GroundworkError, ModelTimeoutError, UpstreamError
from groundwork.models.base import EmbeddingModel, Vectors
from groundwork.models.http import SharedSession
from groundwork.models.openai_compat import translate_http_error


class OpenAICompatibleEmbedder(EmbeddingModel):
    """A remote embedding model. ``dimensions`` must be configured: indexes are sized before any call."""

    def __init__(
        self,
        model: str,
        base_url: str,
        dimensions: int,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        batch_size: int = 64,
        clients: SharedSession | None = None,
    ) -> None:
        self.name = model
        self.dimensions = dimensions
        self.url = base_url.rstrip("/") + "/embeddings"
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self._clients = clients or SharedSession()

    def _headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(
                f"embedding model {self.name!r} reads its API key from ${self.api_key_env}, which is not set"
            )
        return {"authorization": f"Bearer {key}"}

    def _parse(self, status: int, raw: bytes, headers: Mapping[str, str], n: int) -> Vectors:
        if status >= 400:
            raise translate_http_error(status, raw.decode("utf-8", "replace"), headers, self.name)
        try:
            data: list[dict[str, Any]] = sorted(orjson.loads(raw)["data"], key=lambda d: d["index"])
            arr = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamError(f"embedding model {self.name!r} sent a malformed response") from exc
        if arr.shape != (n, self.dimensions):
            raise UpstreamError(
                f"embedding model {self.name!r} returned shape {arr.shape}, "
                f"expected ({n}, {self.dimensions}): check embeddings.dimensions"
            )
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        normalised: Vectors = (arr / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalised

    def _error(self, exc: BaseException) -> GroundworkError:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return ModelTimeoutError(f"embedding model {self.name!r} at {self.url} timed out")
        return UpstreamError(f"embedding model {self.name!r} at {self.url} is unreachable: {exc!r}")

    def embed(self, texts: Sequence[str]) -> Vectors:
        out: list[Vectors] = [np.zeros((0, self.dimensions), dtype=np.float32)]
        with httpx.Client(timeout=self.timeout_s) as client:
            for i in range(0, len(texts), self.batch_size):
                batch = list(texts[i : i + self.batch_size])
                try:
                    resp = client.post(
                        self.url, json={"model": self.name, "input": batch}, headers=self._headers()
                    )
                except httpx.TransportError as exc:
                    raise self._error(exc) from exc
                out.append(self._parse(resp.status_code, resp.content, resp.headers, len(batch)))
        return np.vstack(out)

    async def aembed(self, texts: Sequence[str]) -> Vectors:
        out: list[Vectors] = [np.zeros((0, self.dimensions), dtype=np.float32)]
        session = self._clients.get()
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        for i in range(0, len(texts), self.batch_size):
            batch = list(texts[i : i + self.batch_size])
            body = orjson.dumps({"model": self.name, "input": batch})
            headers = {"content-type": "application/json", **self._headers()}
            try:
                async with session.post(self.url, data=body, headers=headers, timeout=timeout) as resp:
                    raw, status, resp_headers = await resp.read(), resp.status, resp.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._error(exc) from exc
            out.append(self._parse(status, raw, resp_headers, len(batch)))
        return np.vstack(out)
