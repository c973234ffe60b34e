"""Fixtures of the evaluation tests: the fake models over the ingested handbook."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.samples import handbook_dir
from groundwork.types import Message

WORSE_MARK = "Be creative"
"""A deliberately worse answer prompt: under it the scripted model invents figures."""


def scripted_answer(messages: Sequence[Message]) -> str:
    """The first sentence of source [1] under a good prompt; an invented figure under the worse one."""
    if WORSE_MARK in messages[0].content:
        return "Staff get 99 days and 42 free lunches every single week."
    match = re.search(r"\[1\][^\n]*\n(.+?[.!?])(\s|$)", messages[-1].content, re.S)
    return match.group(1).strip() if match else "I don't know."


@pytest.fixture
def eval_container(tmp_path: Path) -> Iterator[Container]:
    """The fakes (scripted answers, bag-of-words embedder) over the handbook in ``default``."""
    settings = Settings.load(
        None,
        data_dir=tmp_path / "data",
        embeddings={"provider": "fake"},
        models={"default_group": "fake", "groups": {"fake": [{"provider": "fake", "model": "fake"}]}},
    )
    c = Container(settings, chat_model=FakeChatModel(responder=scripted_answer), embedder=FakeEmbedder())
    report = c.ingestor.ingest_paths([handbook_dir()])
    assert not report.failed
    yield c
    c.close()
