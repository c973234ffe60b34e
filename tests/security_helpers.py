"""Helpers of the security tests: an app with authentication on, keys per role, authenticated calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from groundwork.api import create_app
from groundwork.container import Container
from tests.conftest import fake_settings


def secure_container(data_dir: Path, cache: dict[str, Any] | None = None, **security: Any) -> Container:
    """A fake-model container with authentication on and the given ``security`` (and cache) settings."""
    extra: dict[str, Any] = {"cache": cache} if cache is not None else {}
    return Container(
        fake_settings(data_dir, security={"auth": True, **security}, router={"num_retries": 0}, **extra)
    )


@asynccontextmanager
async def client_of(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of ``create_app(container)``."""
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def upload(name: str, text: str, groups: list[str]) -> dict[str, Any]:
    """The JSON body of an upload of one text document."""
    return {"documents": [{"name": name, "text": text, "groups": groups}]}
