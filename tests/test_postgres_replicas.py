"""Two ``groundwork serve`` replicas sharing one PostgreSQL and one Redis, with authentication on.

The acceptance tests of scale-out (issue #8): documents, API keys, exact rate limits and the response
cache are shared by replicas; each replica is a real OS process with its own data dir.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from typer.testing import CliRunner

from groundwork.cli.main import app as cli_app
from tests.conftest import require
from tests.replicas import replicas

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"


def _config(path: Path, dsn: str, prefix: str) -> Path:
    lines = [
        "embeddings: {provider: fake}",
        "models: {default_group: fake, groups: {fake: [{provider: fake, model: fake}]}}",
        f"storage: {{backend: postgres, postgres: {{dsn: '{dsn}', pool_max: 4}}}}",
        f"redis_url: '{REDIS_URL}'",
        "router: {health_state: redis}",
        f"security: {{auth: true, rate_limits: {{backend: redis, key_prefix: '{prefix}rl:'}}}}",
        f"cache: {{enabled: true, backend: redis, key_prefix: '{prefix}cache:'}}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _redis_up(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@dataclass(frozen=True)
class Cluster:
    """Two replicas' URLs and an admin key created with the CLI against the shared database."""

    a: str
    b: str
    admin: str
    dsn: str

    def key(self, name: str, role: str = "user", groups: tuple[str, ...] = (), **limits: int) -> str:
        """A new key created through replica A's HTTP API (as admin)."""
        body = {"name": name, "role": role, "groups": list(groups), **limits}
        r = httpx.post(f"{self.a}/v1/keys", json=body, headers=_auth(self.admin), timeout=30)
        assert r.status_code in (200, 201), r.text
        return str(r.json()["key"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def cluster(
    make_pg_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    require(_redis_up(REDIS_URL), f"the replica tests need Redis at {REDIS_URL}")
    workdir = tmp_path_factory.mktemp("replicas")
    prefix = f"gwtest:{uuid.uuid4().hex[:10]}:"  # this run's own Redis keys
    dsn = make_pg_database()
    config = _config(workdir / "groundwork.yaml", dsn, prefix)
    made = CliRunner().invoke(
        cli_app,
        ["keys", "create", "--name", "ops-admin", "--role", "admin", "--config", str(config),
         "--data-dir", str(workdir / "cli")],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    admin = made.stdout.strip().splitlines()[-1]
    assert admin.startswith("gw_")
    assert not (workdir / "cli" / "security.sqlite3").exists()  # the key went to PostgreSQL
    try:
        with replicas(config, workdir) as (a, b):
            yield Cluster(a, b, admin, dsn)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def test_a_key_created_once_works_on_both_replicas(cluster: Cluster) -> None:
    for url in (cluster.a, cluster.b):  # the CLI's key, from the shared PostgreSQL
        assert httpx.get(f"{url}/v1/keys", headers=_auth(cluster.admin), timeout=30).status_code == 200
    token = cluster.key("reader", "user", ("ops",))  # through replica A's HTTP API
    body = {"model": "fake", "input": ["hello"]}
    for url in (cluster.a, cluster.b):
        r = httpx.post(f"{url}/v1/embeddings", json=body, headers=_auth(token), timeout=30)
        assert r.status_code == 200, r.text
        denied = httpx.get(f"{url}/v1/keys", headers=_auth(token), timeout=30)
        assert denied.status_code == 403  # the role travels with the key
    prefix = token.split("_")[1]
    revoked = httpx.delete(f"{cluster.b}/v1/keys/gw_{prefix}", headers=_auth(cluster.admin), timeout=30)
    assert revoked.status_code in (200, 204), revoked.text
    r = httpx.post(f"{cluster.b}/v1/embeddings", json=body, headers=_auth(token), timeout=30)
    assert r.status_code == 401 and "revoked" in r.text  # refused at once where it was revoked
    # refused on A too, once A's memory of the verified key (security.key_cache_s, 5 s) runs out
    deadline = time.monotonic() + 5.0 + 3.0
    while True:
        r = httpx.post(f"{cluster.a}/v1/embeddings", json=body, headers=_auth(token), timeout=30)
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 401 and "revoked" in r.text  # revoked on B, refused on A
    assert (
        httpx.get(f"{cluster.b}/v1/keys", headers=_auth("gw_00000000_" + "x" * 43), timeout=30).status_code
        == 401
    )


def test_a_rate_limit_over_both_replicas_admits_exactly_the_limit(cluster: Cluster) -> None:
    limit, total = 20, 60
    token = cluster.key("burst", "user", ("ops",), rpm=limit)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30, headers=_auth(token)) as client:
            body = {"model": "fake", "input": ["x"]}
            calls = [
                client.post(f"{(cluster.a, cluster.b)[n % 2]}/v1/embeddings", json=body) for n in range(total)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    started = time.monotonic()
    codes = asyncio.run(asyncio.wait_for(burst(), 60))
    elapsed = time.monotonic() - started
    assert sorted(set(codes)) == [200, 429], codes
    # the bucket refills one request every 60 / limit = 3 s: a burst that fast admits exactly the limit;
    # on a machine so loaded that it took longer, each refill may admit one more, never more than that
    refills = int(elapsed / (60 / limit))
    assert limit <= codes.count(200) <= limit + refills, (codes.count(200), elapsed)
    if refills == 0:
        assert codes.count(200) == limit and codes.count(429) == total - limit
    assert elapsed < 30, f"60 requests over two replicas took {elapsed:.1f}s"


def test_a_cached_answer_is_a_hit_on_the_other_replica_within_one_scope(cluster: Cluster) -> None:
    ops_1 = cluster.key("ops-1", "user", ("ops",))
    ops_2 = cluster.key("ops-2", "user", ("ops",))  # another key, same role and groups: same scope
    hr = cluster.key("hr-1", "user", ("hr",))
    question = f"What is the answer to question {uuid.uuid4().hex}?"
    body = {"model": "fake", "messages": [{"role": "user", "content": question}]}

    def ask(url: str, token: str) -> httpx.Response:
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=_auth(token), timeout=30)
        assert r.status_code == 200, r.text
        return r

    first = ask(cluster.a, ops_1)
    assert first.headers["x-groundwork-cache"] == "miss"
    again = ask(cluster.b, ops_2)
    assert again.headers["x-groundwork-cache"] == "hit"
    assert again.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert ask(cluster.b, hr).headers["x-groundwork-cache"] == "miss"  # other groups: not their entry
    assert ask(cluster.a, hr).headers["x-groundwork-cache"] == "hit"  # ... but now their own is shared


def test_a_document_ingested_through_one_replica_is_answered_by_the_other(cluster: Cluster) -> None:
    a, b, admin = cluster.a, cluster.b, _auth(cluster.admin)
    reader = _auth(cluster.key("ops-reader", "user", ("ops",)))
    doc = {"name": "garage", "text": "The parking garage opens at 07:15 on weekdays.", "groups": ["ops"]}
    r = httpx.post(f"{a}/v1/collections/ops/documents", json={"documents": [doc]}, headers=admin, timeout=30)
    assert r.status_code == 201, r.text
    query = {"query": "when does the parking garage open", "collection": "ops", "top_k": 1}
    chunk = httpx.post(f"{b}/v1/retrieve", json=query, headers=reader, timeout=30).json()["chunks"][0]
    assert "07:15" in chunk["text"]
    outsider = _auth(cluster.key("hr-reader", "user", ("hr",)))
    assert httpx.post(f"{b}/v1/retrieve", json=query, headers=outsider, timeout=30).json()["chunks"] == []
    answer = httpx.post(
        f"{b}/v1/answers", json={"question": "When does the parking garage open?", "collection": "ops"},
        headers=reader, timeout=30,
    ).json()  # fmt: skip
    assert answer["citations"] and answer["citations"][0]["source"] == "garage.txt"
    listed = httpx.get(f"{b}/v1/collections/ops/documents", headers=admin, timeout=30).json()["documents"]
    assert [d["source"] for d in listed] == ["garage.txt"]
    deleted = httpx.delete(f"{b}/v1/collections/ops/documents/{listed[0]['id']}", headers=admin, timeout=30)
    assert deleted.status_code in (200, 204), deleted.text
    assert httpx.get(f"{a}/v1/collections/ops/documents", headers=admin, timeout=30).json()["documents"] == []
    events = httpx.get(f"{a}/v1/audit?action=documents.", headers=admin, timeout=30).json()["events"]
    assert {e["action"] for e in events} >= {"documents.ingest", "documents.delete"}  # one shared audit log


def test_a_trace_served_by_one_replica_takes_feedback_on_the_other(cluster: Cluster) -> None:
    alice = cluster.key("alice", "user", ("ops",))
    body = {"model": "fake", "input": ["trace me"]}
    served = httpx.post(f"{cluster.a}/v1/embeddings", json=body, headers=_auth(alice), timeout=30)
    trace_id = served.headers["x-trace-id"]
    deadline = time.monotonic() + 10  # spans are exported from a queue, shortly after the response
    with psycopg.connect(cluster.dsn) as conn:
        while not conn.execute("SELECT 1 FROM gw_spans WHERE trace_id = %s", (trace_id,)).fetchone():
            assert time.monotonic() < deadline, "replica A's spans never reached PostgreSQL"
            time.sleep(0.1)
    feedback = {"trace_id": trace_id, "score": 1, "comment": "right"}
    r = httpx.post(f"{cluster.b}/v1/feedback", json=feedback, headers=_auth(alice), timeout=30)
    assert r.status_code == 201 and r.json()["known_trace"] is True, r.text
    bob = cluster.key("bob", "user", ("ops",))
    denied = httpx.post(f"{cluster.b}/v1/feedback", json=feedback, headers=_auth(bob), timeout=30)
    assert denied.status_code == 403  # the owner recorded by replica A is known to replica B
