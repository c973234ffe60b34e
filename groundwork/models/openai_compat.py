"""A chat model served by any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, hosted APIs).

Streams over SSE with aiohttp (:mod:`groundwork.models.http` says why not httpx). HTTP and transport
failures are translated here, at the edge, into the :mod:`groundwork.errors` taxonomy, keeping the
status code, ``Retry-After`` and the body.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from groundwork.errors import (
    AuthError,
    ConfigError,
    ContentPolicyError,
    ContextWindowError,
    GroundworkError,
    InputError,
    ModelTimeoutError,
    RateLimitError,
    UpstreamError,
)
from groundwork.models.base import ChatModel
from groundwork.models.http import SharedSession
from groundwork.types import Completion, GenerationOptions, Message, StreamChunk, Usage


def translate_http_error(status: int, body: str, headers: Mapping[str, str], model: str) -> GroundworkError:
    """Map an upstream HTTP error response to a :class:`GroundworkError`."""
    details = {"status_code": status, "body": body[:2000], "model": model}
    text = f"upstream model {model!r} answered HTTP {status}: {body[:300]}"
    if status == 429:
        retry_after = headers.get("retry-after") or headers.get("Retry-After")
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        return RateLimitError(text, retry_after=seconds, details=details)
    if status in (401, 403):
        return AuthError(text, details=details)
    if status in (400, 413, 422):
        lowered = body.lower()
        if "context" in lowered and ("length" in lowered or "window" in lowered):
            return ContextWindowError(text, details=details)
        if (
            "content_filter" in lowered
            or "content_policy" in lowered
            or "content management policy" in lowered
        ):
            return ContentPolicyError(text, details=details)
        return InputError(text, details=details)
    if status == 408:
        return ModelTimeoutError(text, details=details)
    return UpstreamError(text, status_code=status, details=details, retryable=status >= 500)


class OpenAICompatibleChatModel(ChatModel):
    """``POST {base_url}/chat/completions``: one JSON request for :meth:`generate`, SSE for :meth:`stream`."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        clients: SharedSession | None = None,
    ) -> None:
        self.name = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self._owns_clients = clients is None
        self._clients = clients or SharedSession()
        self._url = f"{self.base_url}/chat/completions"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"model {self.name!r} reads its API key from ${self.api_key_env}, which is not set"
                )
            headers["authorization"] = f"Bearer {key}"
        return headers

    def _payload(self, messages: Sequence[Message], opts: GenerationOptions, stream: bool) -> bytes:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
            "stream": stream,
        }
        if stream:
            payload["stream_options"] = {"include_usage": True}
        if opts.stop:
            payload["stop"] = list(opts.stop)
        return orjson.dumps(payload)

    def _transport_error(self, exc: BaseException) -> GroundworkError:
        """A timeout or a connection failure, translated."""
        if isinstance(exc, TimeoutError):
            return ModelTimeoutError(f"model {self.name!r} at {self._url} timed out after {self.timeout_s}s")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return UpstreamError(f"model {self.name!r} at {self._url} is unreachable: {exc.os_error!r}")
        return UpstreamError(f"model {self.name!r} at {self._url} failed in transit: {exc!r}")

    async def generate(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> Completion:
        """One non-streamed request (cheaper than collecting a stream)."""
        payload = self._payload(messages, options or GenerationOptions(), stream=False)
        try:
            async with self._clients.get().post(
                self._url, data=payload, headers=self._headers(), timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from exc
        if status >= 400:
            raise translate_http_error(status, raw.decode("utf-8", "replace"), headers, self.name)
        try:
            body = orjson.loads(raw)
            choice = body["choices"][0]
            text = choice["message"].get("content") or ""
            u = body.get("usage") or {}
            usage = Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise UpstreamError(
                f"model {self.name!r} at {self._url} sent a malformed response: {raw[:200]!r}"
            ) from exc
        return Completion(
            text, str(body.get("model") or self.name), usage, choice.get("finish_reason") or "stop"
        )

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        payload = self._payload(messages, options or GenerationOptions(), stream=True)
        usage: Usage | None = None
        finish: str | None = None
        done = False
        try:
            async with self._clients.get().post(
                self._url, data=payload, headers=self._headers(), timeout=self._timeout
            ) as resp:
                if resp.status >= 400:
                    body = (await resp.read()).decode("utf-8", "replace")
                    raise translate_http_error(resp.status, body, resp.headers, self.name)
                async for raw_line in resp.content:
                    if not raw_line.startswith(b"data:"):
                        continue
                    data = raw_line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        # read to the end so the connection goes back to the pool instead of closing
                        async for _ in resp.content:
                            pass
                        break
                    event = orjson.loads(data)
                    if "error" in event:  # some servers report a failure inside the stream
                        raise UpstreamError(
                            f"model {self.name!r} failed mid-stream: {str(event['error'])[:300]}"
                        )
                    if event.get("usage"):
                        u = event["usage"]
                        usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)))
                    for choice in event.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if delta:
                            yield StreamChunk(delta=delta)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_error(exc) from exc
        except (orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise UpstreamError(f"model {self.name!r} sent a malformed stream event: {exc}") from exc
        if not done and finish is None:
            # The body ended with neither [DONE] nor a finish reason: the connection was cut.
            raise UpstreamError(
                f"the stream from model {self.name!r} at {self._url} ended before it finished"
            )
        yield StreamChunk(delta="", usage=usage or Usage(), finish_reason=finish or "stop")

    async def aclose(self) -> None:
        if self._owns_clients:
            await self._clients.aclose()
