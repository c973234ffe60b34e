"""Grounding checks, pure functions: does a source support an answer sentence?

A sentence is supported by a chunk when enough of its content words occur in the chunk (light
stemming) and every number and every name it states (capitalised words after the first) occurs there
too. Numbers and names matter most: a small model that says "40 days" where the source says "27 days",
or "Priya" where it says "Tom", shares almost every other word with the source. Fragments (fewer than
three content words, or a line that only introduces a list) are not claims and support nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from groundwork.stores.sqlite import STOPWORDS

_WORD = re.compile(r"[a-z0-9]+(?:[.,:][0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][a-zA-Z]+")
MIN_CLAIM_WORDS = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_EXTRA_STOP = frozenset(
    (
        "also any all just may must only per please some such very according document documents source "
        "sources provided context based answer question"
    ).split()
)

REFUSAL_PATTERNS = re.compile(
    r"\b(i (do not|don't) know|not (mentioned|stated|specified|provided|covered|included)|"
    r"(do|does) not (say|mention|specify|contain|provide|cover)|no information|cannot (answer|find)|"
    r"can't (answer|find)|unable to (answer|find|determine))\b",
    re.IGNORECASE,
)


def _stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    """Lower-cased, lightly stemmed words that carry meaning (stop words dropped)."""
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS and w not in _EXTRA_STOP}


def numbers(text: str) -> set[str]:
    """The numbers a text states, normalised (``1,000`` -> ``1000``)."""
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


def names(text: str) -> set[str]:
    """Capitalised words that are not the first word of a sentence, lower-cased (names, days, places)."""
    return {w.lower() for w in _NAME.findall(text.strip())}


def is_claim(sentence: str) -> bool:
    """Whether a sentence states something checkable (not a fragment, not a list's lead-in)."""
    return len(content_words(sentence)) >= MIN_CLAIM_WORDS and not sentence.rstrip().endswith(":")


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer (citation markers kept with their sentence)."""
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


@dataclass(frozen=True, slots=True)
class Support:
    """How well one source supports one sentence."""

    source_index: int
    overlap: float
    numbers_ok: bool

    def supported(self, min_overlap: float) -> bool:
        return self.numbers_ok and self.overlap >= min_overlap


def best_support(sentence: str, sources: Sequence[str]) -> Support | None:
    """The source that best supports ``sentence`` (highest overlap with every number present)."""
    words = content_words(sentence)
    nums = numbers(sentence)
    proper = names(sentence)
    if not words or not sources:
        return None
    best: Support | None = None
    for i, src in enumerate(sources):
        src_words = content_words(src)
        overlap = len(words & src_words) / len(words)
        ok = nums <= numbers(src) and proper <= {w.lower() for w in _WORD.findall(src.lower())}
        cand = Support(i, overlap, ok)
        if best is None or (cand.numbers_ok, cand.overlap) > (best.numbers_ok, best.overlap):
            best = cand
    return best


def is_refusal(text: str) -> bool:
    """Whether a model's answer says it does not know."""
    return bool(REFUSAL_PATTERNS.search(text))
