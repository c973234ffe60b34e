"""Two ``groundwork serve`` replicas sharing one PostgreSQL (and Redis for router cooldowns)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis

from tests.replicas import replicas

pytestmark = pytest.mark.integration


def _config(path: Path, dsn: str, redis_url: str | None) -> Path:
    lines = [
        "embeddings: {provider: fake}",
        "models: {default_group: fake, groups: {fake: [{provider: fake, model: fake}]}}",
        f"storage: {{backend: postgres, postgres: {{dsn: '{dsn}', pool_max: 4}}}}",
        "security: {auth: false}",  # this test is about shared storage; keys across replicas: see below
    ]
    if redis_url is not None:
        lines += [f"redis_url: '{redis_url}'", "router: {health_state: redis}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def test_a_document_ingested_through_one_replica_is_answered_by_the_other(
    tmp_path: Path, pg_dsn: str
) -> None:
    redis_url = "redis://127.0.0.1:6379/0"
    config = _config(tmp_path / "groundwork.yaml", pg_dsn, redis_url if _redis_up(redis_url) else None)
    with replicas(config, tmp_path) as (a, b):
        doc = {"name": "garage", "text": "The parking garage opens at 07:15 on weekdays.", "groups": ["ops"]}
        r = httpx.post(f"{a}/v1/collections/ops/documents", json={"documents": [doc]}, timeout=30)
        assert r.status_code == 201, r.text
        query = {"query": "when does the parking garage open", "collection": "ops", "top_k": 1}
        chunk = httpx.post(f"{b}/v1/retrieve", json=query, timeout=30).json()["chunks"][0]
        assert "07:15" in chunk["text"]
        answer = httpx.post(
            f"{b}/v1/answers", json={"question": "When does the parking garage open?", "collection": "ops"},
            timeout=30,
        ).json()  # fmt: skip
        assert answer["citations"] and answer["citations"][0]["source"] == "garage.txt"
        listed = httpx.get(f"{b}/v1/collections/ops/documents", timeout=30).json()["documents"]
        assert [d["source"] for d in listed] == ["garage.txt"]
        deleted = httpx.delete(f"{b}/v1/collections/ops/documents/{listed[0]['id']}", timeout=30)
        assert deleted.status_code in (200, 204), deleted.text
        assert httpx.get(f"{a}/v1/collections/ops/documents", timeout=30).json()["documents"] == []
