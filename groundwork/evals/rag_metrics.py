"""RAG metrics, pure functions over one case's retrieval and answer.

- **context recall**: share of the gold documents that retrieval found (in the chunks given to the model).
- **context precision**: average precision of the retrieved chunks against the gold documents (a gold
  chunk ranked first counts more than one ranked last), as ragas defines it.
- **faithfulness**: share of the answer's claims (sentences, citation markers removed) that some
  retrieved chunk supports (:mod:`groundwork.rag.grounding`: content words, numbers and names).
- **answer relevance**: cosine similarity of the question and the answer embeddings (clipped at 0).

A metric that does not apply (no gold documents, an answer that refuses) is ``None`` and left out of
means, so a suite is not rewarded or punished for what it did not measure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

from groundwork.models.base import EmbeddingModel
from groundwork.rag.grounding import best_support, is_claim, is_refusal, split_sentences

_MARKER = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True, slots=True)
class Context:
    """A retrieved chunk as a metric sees it: which document, what text."""

    document: str
    source: str
    text: str


def matches_document(gold: str, document: str, source: str = "") -> bool:
    """Whether ``gold`` (a file name, path suffix or document id) names this document."""
    if gold == document:
        return True
    if not source:
        return False
    return PurePath(source).name == gold or source.endswith("/" + gold.lstrip("/"))


def _relevant(ctx: Context, gold: Sequence[str]) -> bool:
    return any(matches_document(g, ctx.document, ctx.source) for g in gold)


def context_recall(contexts: Sequence[Context], gold: Sequence[str]) -> float | None:
    """Share of gold documents present in ``contexts``."""
    if not gold:
        return None
    found = sum(any(matches_document(g, c.document, c.source) for c in contexts) for g in gold)
    return found / len(gold)


def context_precision(contexts: Sequence[Context], gold: Sequence[str]) -> float | None:
    """Average precision of the ranked ``contexts`` (1.0: every relevant chunk ranked first)."""
    if not gold:
        return None
    hits, total = 0, 0.0
    for rank, ctx in enumerate(contexts, start=1):
        if _relevant(ctx, gold):
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def claims(answer: str) -> list[str]:
    """The checkable sentences of an answer, citation markers removed."""
    return [s for s in (_MARKER.sub("", x).strip() for x in split_sentences(answer)) if is_claim(s)]


def faithfulness(answer: str, contexts: Sequence[Context], min_support: float = 0.5) -> float | None:
    """Share of the answer's claims supported by a retrieved chunk (``None``: no claims, a refusal)."""
    found = claims(answer)
    if not found or is_refusal(answer):
        return None
    texts = [c.text for c in contexts]
    supported = 0
    for claim in found:
        support = best_support(claim, texts)
        supported += support is not None and support.supported(min_support)
    return supported / len(found)


def answer_relevance(question: str, answer: str, embedder: EmbeddingModel) -> float | None:
    """Cosine similarity of question and answer (``None`` for an empty answer or a refusal)."""
    text = _MARKER.sub("", answer).strip()
    if not text or is_refusal(text):
        return None
    vectors = embedder.embed([question, text])
    return max(0.0, float(vectors[0] @ vectors[1]))
