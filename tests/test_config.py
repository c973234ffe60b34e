from __future__ import annotations

from pathlib import Path

import pytest

from groundwork.config import DEFAULT_CONFIG_YAML, Settings
from groundwork.errors import ConfigError


def test_defaults_are_embedded() -> None:
    s = Settings.load(None)
    assert s.data_dir == Path(".groundwork")
    assert s.embeddings.provider == "minilm"
    assert s.models.groups[s.models.default_group][0].provider == "embedded"
    assert s.models_dir == Path(".groundwork/models")


def test_the_default_file_written_by_init_loads(tmp_path: Path) -> None:
    path = tmp_path / "groundwork.yaml"
    path.write_text(DEFAULT_CONFIG_YAML)
    assert Settings.load(path).model_dump() == Settings.load(None).model_dump()


def test_yaml_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "groundwork.yaml"
    path.write_text("data_dir: /srv/a\nretrieval:\n  top_k: 7\n  candidates: 11\n")
    s = Settings.load(path)
    assert s.data_dir == Path("/srv/a") and s.retrieval.top_k == 7
    monkeypatch.setenv("GROUNDWORK_RETRIEVAL__TOP_K", "9")
    monkeypatch.setenv("GROUNDWORK_DATA_DIR", "/srv/b")
    s = Settings.load(path)
    assert s.retrieval.top_k == 9 and s.retrieval.candidates == 11 and s.data_dir == Path("/srv/b")
    assert Settings.load(path, data_dir=Path("/srv/c")).data_dir == Path("/srv/c")


def test_config_from_env_var_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "other.yaml"
    path.write_text("chunking:\n  max_tokens: 99\n")
    monkeypatch.setenv("GROUNDWORK_CONFIG", str(path))
    assert Settings.load().chunking.max_tokens == 99


@pytest.mark.parametrize(
    ("yaml_text", "must_name"),
    [
        ("retrieval:\n  top_k: 0\n", "retrieval.top_k"),
        ("retrieval:\n  topk: 3\n", "retrieval.topk"),
        ("nonsense: 1\n", "nonsense"),
        ("embeddings:\n  provider: word2vec\n", "embeddings.provider"),
        ("chunking:\n  max_tokens: 64\n  overlap_tokens: 64\n", "overlap_tokens"),
        (
            "models:\n  default_group: big\n  groups:\n    local:\n      - provider: embedded\n",
            "default_group",
        ),
        ("models:\n  groups:\n    local:\n      - provider: openai\n        model: m\n", "base_url"),
        ("router:\n  fallbacks:\n    local: [nope]\n", "router.fallbacks names model group 'nope'"),
        ("router:\n  strategy: fastest\n", "router.strategy"),
        ("observability:\n  export_interval_s: 0\n", "observability.export_interval_s"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, yaml_text: str, must_name: str) -> None:
    path = tmp_path / "groundwork.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        Settings.load(path)
    assert must_name in info.value.message
    assert str(path) in info.value.message


def test_invalid_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUNDWORK_RETRIEVAL__TOP_K", "lots")
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert "GROUNDWORK_RETRIEVAL__TOP_K" in info.value.message


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "groundwork.yaml"
    bad.write_text("retrieval: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Settings.load(bad)
    with pytest.raises(ConfigError, match="groundwork init"):
        Settings.load(tmp_path / "missing.yaml")
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        Settings.load(bad)
