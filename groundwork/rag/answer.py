"""Grounded answering: retrieve, prompt, generate (streamed), verify, cite.

Grounding does not rest on the model alone (the embedded default has 135M parameters and will invent):

1. When the best retrieved evidence is weak (``retrieval.min_vector_score``) the answer is
   :data:`NO_ANSWER` and the model is not called.
2. Each sentence of the model's answer is checked against the sources (:mod:`.grounding`); supported
   sentences are kept and cited, unsupported ones dropped.
3. When no sentence survives, or the model refuses although the evidence is strong, the answer is
   *extractive*: the source sentences that best answer the question, cited, and marked as such.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from groundwork.config import AnswerSettings
from groundwork.models.base import ChatModel, EmbeddingModel
from groundwork.observability.tracing import span
from groundwork.prompts.builtin import RAG_ANSWER, RAG_ANSWER_TEMPLATE
from groundwork.prompts.registry import PromptRegistry
from groundwork.prompts.template import PromptTemplate
from groundwork.rag.chunking import sentence_spans
from groundwork.rag.grounding import best_support, content_words, is_claim, is_refusal, split_sentences
from groundwork.rag.retrieval import Filters, Retrieval, Retriever
from groundwork.types import LOCAL_ADMIN, Citation, GenerationOptions, Message, Principal, ScoredChunk, Usage

NO_ANSWER = "The documents do not say."

SYSTEM_PROMPT = RAG_ANSWER_TEMPLATE.messages[0][1]
"""The built-in system prompt (the first version of ``rag.answer`` in the prompt registry)."""

Mode = Literal["generated", "extractive", "no_answer"]

EXTRACT_RANK_PRIOR = 0.15
"""Bonus of a sentence from the best-ranked chunk when choosing quotes (halved for the second, ...)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A grounded answer. ``text`` carries ``[n]`` markers that index ``citations``."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    mode: Mode
    draft: str = ""
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    best_vector_score: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    """Sentences of the model's draft that no source supported: dropped from ``text``, kept here."""
    prompt: str = ""
    """The prompt version the draft was generated with, ``name@version`` (empty: no generation)."""

    def to_dict(self) -> dict[str, object]:
        return {
            "question": self.question,
            "answer": self.text,
            "mode": self.mode,
            "citations": [
                {
                    "number": c.number,
                    "document_id": c.document_id,
                    "source": c.source,
                    "title": c.title,
                    "heading_path": list(c.heading_path),
                    "chunk_id": c.chunk_id,
                    "start": c.start,
                    "end": c.end,
                    "score": round(c.score, 4),
                    "quote": c.quote,
                }
                for c in self.citations
            ],
            "model": self.model,
            "prompt": self.prompt,
            "draft": self.draft,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "best_vector_score": round(self.best_vector_score, 4),
            "unsupported": list(self.unsupported),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


def build_messages(
    question: str, chunks: Sequence[ScoredChunk], template: PromptTemplate = RAG_ANSWER_TEMPLATE
) -> list[Message]:
    """The grounded prompt (``template``, variables ``sources`` and ``question``): numbered sources."""
    sources = "\n\n".join(
        f"[{n}] {' > '.join(sc.chunk.heading_path) or sc.chunk.title}\n{sc.chunk.text}"
        for n, sc in enumerate(chunks, start=1)
    )
    return template.render_messages({"sources": sources, "question": question})


class _Citer:
    """Numbers citations in order of first use, one number per (chunk, span)."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._numbers: dict[tuple[str, int, int], int] = {}

    def cite(self, sc: ScoredChunk, start: int, end: int, quote: str) -> int:
        key = (sc.chunk.id, start, end)
        if key not in self._numbers:
            c = sc.chunk
            number = len(self.citations) + 1
            self._numbers[key] = number
            self.citations.append(
                Citation(
                    number=number,
                    document_id=c.document_id,
                    source=c.source,
                    title=c.title,
                    heading_path=c.heading_path,
                    chunk_id=c.id,
                    start=start,
                    end=end,
                    score=sc.score,
                    quote=quote,
                )
            )
        return self._numbers[key]


class Answerer:
    """Answers questions from a collection with verified citations."""

    def __init__(
        self,
        retriever: Retriever,
        model: ChatModel,
        embedder: EmbeddingModel,
        settings: AnswerSettings,
        min_vector_score: float,
        context_chunks: int = 3,
        prompts: PromptRegistry | None = None,
        prompt_ref: str = f"{RAG_ANSWER}@production",
        screen: Callable[[Sequence[ScoredChunk]], Sequence[ScoredChunk]] | None = None,
    ) -> None:
        self.screen = screen  # drops (or fences) retrieved chunks carrying instructions (security guards)
        self.retriever = retriever
        self.prompts = prompts
        self.prompt_ref = prompt_ref
        """Which version of the answer prompt to use, ``name@label`` or ``name@version``."""
        self.model = model
        self.embedder = embedder
        self.settings = settings
        self.min_vector_score = min_vector_score
        self.context_chunks = context_chunks

    async def ask(
        self,
        question: str,
        collection: str | None = "default",
        principal: Principal = LOCAL_ADMIN,
        on_token: Callable[[str], None] | None = None,
        top_k: int | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        """Answer ``question`` from what ``principal`` may read in ``collection``."""
        started = time.perf_counter()
        # retrieval and verification embed text on the CPU: keep them off the event loop
        retrieval = await asyncio.to_thread(
            self.retriever.retrieve, question, collection, principal, top_k, filters
        )
        if self.screen is not None:  # indirect prompt injection: screened before prompt and citations
            retrieval = dataclasses.replace(retrieval, chunks=tuple(self.screen(retrieval.chunks)))
        timings = {f"retrieve.{k}": v for k, v in retrieval.timings.items()}
        if not retrieval.chunks or retrieval.best_vector_score < self.min_vector_score:
            timings["total"] = time.perf_counter() - started
            return Answer(
                question,
                NO_ANSWER,
                (),
                "no_answer",
                best_vector_score=retrieval.best_vector_score,
                timings=timings,
                model=self.model.name,
            )
        context = retrieval.chunks[: self.context_chunks]
        prompt_ref, template = self.resolve_prompt()
        options = GenerationOptions(
            max_tokens=template.model.max_tokens or self.settings.max_tokens,
            temperature=template.model.temperature or 0.0,
        )
        t0 = time.perf_counter()
        parts: list[str] = []
        usage = Usage()
        finish = "stop"
        first_token: float | None = None
        with span("prompt.render", chunks=len(context), prompt=prompt_ref):
            messages = build_messages(question, context, template)
        async for piece in self.model.stream(messages, options):
            if piece.delta:
                first_token = first_token or time.perf_counter()
                parts.append(piece.delta)
                if on_token is not None:
                    on_token(piece.delta)
            if piece.usage is not None:
                usage = piece.usage
            if piece.finish_reason is not None:
                finish = piece.finish_reason
        draft = "".join(parts).strip()
        timings["generate"] = time.perf_counter() - t0
        if first_token is not None:
            timings["time_to_first_token"] = first_token - t0
        t1 = time.perf_counter()
        with span("output.verify") as sp:
            text, citations, mode, unsupported = await asyncio.to_thread(
                self._verify, question, draft, retrieval, finish == "length"
            )
            sp.set_attribute("mode", mode)
            sp.set_attribute("unsupported", len(unsupported))
        timings["verify"] = time.perf_counter() - t1
        timings["total"] = time.perf_counter() - started
        return Answer(
            question,
            text,
            citations,
            mode,
            draft=draft,
            model=self.model.name,
            usage=usage,
            best_vector_score=retrieval.best_vector_score,
            timings=timings,
            unsupported=unsupported,
            prompt=prompt_ref,
        )

    def resolve_prompt(self) -> tuple[str, PromptTemplate]:
        """The answer prompt's ``name@version`` and template (the built-in one without a registry)."""
        if self.prompts is None:
            return f"{RAG_ANSWER}@builtin", RAG_ANSWER_TEMPLATE
        version = self.prompts.resolve(self.prompt_ref)
        return version.ref, version.template

    def _verify(
        self, question: str, draft: str, retrieval: Retrieval, truncated: bool = False
    ) -> tuple[str, tuple[Citation, ...], Mode, tuple[str, ...]]:
        """Keep the draft's supported claims, cited; the rest is returned as unsupported."""
        context = retrieval.chunks[: self.context_chunks]
        sources = [sc.chunk.text for sc in context]
        citer = _Citer()
        kept: list[str] = []
        unsupported: list[str] = []
        if draft and not is_refusal(draft):
            sentences = split_sentences(draft)
            if truncated and sentences and sentences[-1][-1:] not in ".!?":
                sentences.pop()  # cut off by max_tokens mid-sentence: not a claim anyone made
            for sentence in sentences:
                if not is_claim(sentence):
                    continue
                support = best_support(sentence, sources)
                if support is None or not support.supported(self.settings.min_support):
                    unsupported.append(sentence)
                    continue
                sc = context[support.source_index]
                n = citer.cite(sc, sc.chunk.start, sc.chunk.end, sc.chunk.text)
                kept.append(f"{sentence.rstrip()} [{n}]")
        if kept:
            return " ".join(kept), tuple(citer.citations), "generated", tuple(unsupported)
        return (*self._extractive(question, retrieval), tuple(unsupported))

    def _extractive(self, question: str, retrieval: Retrieval) -> tuple[str, tuple[Citation, ...], Mode]:
        """The source sentences that best answer the question, each cited."""
        candidates: list[tuple[ScoredChunk, int, int, str]] = []
        rank_prior: list[float] = []
        for rank, sc in enumerate(retrieval.chunks[: self.context_chunks]):
            for s, e in sentence_spans(sc.chunk.text):
                sentence = sc.chunk.text[s:e].strip()
                if len(content_words(sentence)) >= 2:
                    candidates.append((sc, sc.chunk.start + s, sc.chunk.start + e, sentence))
                    rank_prior.append(EXTRACT_RANK_PRIOR / (rank + 1))
        if not candidates:
            return NO_ANSWER, (), "no_answer"
        qwords = content_words(question)
        vecs = self.embedder.embed([question] + [c[3] for c in candidates])
        cosine = vecs[1:] @ vecs[0]
        overlap = np.asarray(
            [len(qwords & content_words(c[3])) / max(1, len(qwords)) for c in candidates], dtype=np.float32
        )
        if float(cosine.max()) < self.settings.min_extract_score:
            return NO_ANSWER, (), "no_answer"  # no sentence is about the question: do not quote a neighbour
        # similarity to the question, its words, and trust in the retriever's ranking of the chunk
        scores = cosine + 0.5 * overlap + np.asarray(rank_prior, dtype=np.float32)
        order = np.argsort(-scores)
        best = float(scores[order[0]])
        citer = _Citer()
        picked: list[str] = []
        for idx in order[:2]:
            if picked and float(scores[idx]) < 0.8 * best:
                break
            sc, start, end, sentence = candidates[int(idx)]
            n = citer.cite(sc, start, end, sentence)
            picked.append(f"{sentence} [{n}]")
        return " ".join(picked), tuple(citer.citations), "extractive"
