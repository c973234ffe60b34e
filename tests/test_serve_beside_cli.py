"""A running ``groundwork serve`` sees what ``groundwork ingest`` writes into its data dir, as it happens.

Both are real OS processes on the embedded store (SQLite, the tantivy keyword index, the faiss index).
Before the vector index followed its directory, the server answered from keyword hits whose vectors it
did not hold, and the pseudo-relevance feedback round failed with a KeyError (a 500).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from groundwork.samples import handbook_dir
from tests.replicas import REPO, replicas

LEAVE = "How many days of annual leave do full-time staff get?"


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-c",
        "from groundwork.cli.main import main; main()",
        *args,
        "--config",
        str(config),
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_documents_ingested_by_the_cli_are_served_without_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "groundwork.yaml"
    config.write_text(
        "embeddings: {provider: fake}\n"
        "models: {default_group: fake, groups: {fake: [{provider: fake, model: fake}]}}\n"
        "security: {auth: false}\n"
    )
    with replicas(config, tmp_path, count=1) as [url]:
        data_dir = tmp_path / "replica-0"
        r = httpx.post(f"{url}/v1/retrieve", json={"query": LEAVE, "top_k": 3}, timeout=30)
        assert r.status_code == 200 and r.json()["chunks"] == []

        done = _cli("ingest", str(handbook_dir()), "--data-dir", str(data_dir), config=config)
        assert done.returncode == 0, done.stdout + done.stderr

        statuses: list[int] = []
        deadline = time.monotonic() + 20
        top: dict[str, object] = {}
        while time.monotonic() < deadline:
            r = httpx.post(f"{url}/v1/retrieve", json={"query": LEAVE, "top_k": 3}, timeout=30)
            statuses.append(r.status_code)
            chunks = r.json().get("chunks") or [{}]
            top = chunks[0]
            if top.get("vector_score") is not None and top.get("keyword_score") is not None:
                break
            time.sleep(0.2)
        assert set(statuses) == {200}, statuses
        assert Path(str(top["source"])).name == "leave-policy.md", top  # both sides found it
        assert top["vector_score"] is not None and top["keyword_score"] is not None, top

        answer = httpx.post(f"{url}/v1/answers", json={"question": LEAVE}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert Path(answer.json()["citations"][0]["source"]).name == "leave-policy.md"

        deleted = _cli("docs", "delete", str(top["document_id"]), "--data-dir", str(data_dir), config=config)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        deadline = time.monotonic() + 20
        sources: set[str] = {"leave-policy.md"}
        while time.monotonic() < deadline and "leave-policy.md" in sources:
            r = httpx.post(f"{url}/v1/retrieve", json={"query": LEAVE, "top_k": 5}, timeout=30)
            assert r.status_code == 200, r.text
            sources = {Path(c["source"]).name for c in r.json()["chunks"]}
            time.sleep(0.2)
        assert "leave-policy.md" not in sources
