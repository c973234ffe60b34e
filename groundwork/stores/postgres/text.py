"""Keyword queries for PostgreSQL full text search, translated from what the retrieval code sends.

Retrieval speaks FTS5 (the embedded store's dialect): a plain question, or for pseudo-relevance feedback a
ready ``match`` expression of quoted phrases ORed together, where repeating a phrase weighs it more
(:func:`groundwork.rag.feedback.feedback_match`). Here both become weighted groups of ``tsquery`` terms:
every term is letters and digits only (the same tokeniser as the embedded store), so nothing a user types
is read as query syntax, and the score is ``sum(weight * ts_rank(tsv, terms of that weight))``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from groundwork.stores.sqlite import STOPWORDS, TOKEN

_PHRASE = re.compile(r'"([^"]*)"')


@dataclass(frozen=True, slots=True)
class WeightedQuery:
    """Terms grouped by weight; each group is a ``to_tsquery`` text (``a | b <-> c``)."""

    groups: tuple[tuple[float, str], ...]

    @property
    def any_term(self) -> str:
        """One ``tsquery`` text matching a row that has any of the terms (for the GIN index)."""
        return " | ".join(f"({terms})" for _, terms in self.groups)


def _term(words: list[str]) -> str | None:
    words = [w.lower() for w in words]
    if not words:
        return None
    return " <-> ".join(words) if len(words) > 1 else words[0]


def plain_query(text: str) -> WeightedQuery | None:
    """The content words of ``text``, ORed, all weighing the same; ``None`` when there are none."""
    words = [w.lower() for w in TOKEN.findall(text)]
    unique = list(dict.fromkeys(w for w in words if w not in STOPWORDS))
    if not unique:
        return None
    return WeightedQuery(((1.0, " | ".join(unique)),))


def match_query(match: str) -> WeightedQuery | None:
    """An FTS5 OR expression of quoted phrases (a repeated phrase weighs more), as weighted groups."""
    counts: dict[str, int] = {}
    phrases = _PHRASE.findall(match)
    if not phrases:  # not the feedback dialect: read it as words
        return plain_query(match)
    for phrase in phrases:
        term = _term(TOKEN.findall(phrase))
        if term is not None:
            counts[term] = counts.get(term, 0) + 1
    if not counts:
        return None
    by_weight: dict[int, list[str]] = {}
    for term, count in counts.items():
        by_weight.setdefault(count, []).append(term)
    return WeightedQuery(
        tuple((float(w), " | ".join(terms)) for w, terms in sorted(by_weight.items(), reverse=True))
    )


_LEXEME = re.compile(r"'((?:[^']|'')*)'")
_OR_OF_LEXEMES = re.compile(r"^\s*'(?:[^']|'')*'(?:\s*\|\s*'(?:[^']|'')*')*\s*$")


def drop_common(parsed: list[str], shares: dict[str, float], max_share: float) -> list[str]:
    """Parsed tsquery texts (one per weight group) without the lexemes found in over ``max_share`` of chunks.

    ``ts_rank`` has no inverse document frequency: a word in most chunks would weigh like a rare one,
    and matching it ranks nearly every row (BM25 gives it almost nothing). Groups that are not plain ORs
    of lexemes are kept whole; if every lexeme is common, nothing is dropped.
    """
    kept: list[str] = []
    for text in parsed:
        if not _OR_OF_LEXEMES.match(text):
            kept.append(text)
            continue
        lexemes = [m.group(0) for m in _LEXEME.finditer(text)]
        rare = [lx for lx in lexemes if shares.get(lx[1:-1].replace("''", "'"), 0.0) <= max_share]
        kept.append(" | ".join(rare))
    if not any(kept):
        return parsed
    return kept
