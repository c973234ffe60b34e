"""Structure-aware chunking: paragraphs under the same heading are packed into chunks within a token
budget; a paragraph longer than the budget is split at sentence boundaries, with overlap.

Every chunk's text is an exact slice ``document.text[start:end]``, so a citation's span opens the
source at the right place. The heading path travels with the chunk and is prepended when embedding.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from groundwork.types import ParsedDocument, Section

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[-])|\n+")


@dataclass(frozen=True, slots=True)
class Span:
    """A chunk before it gets ids: a slice of the document under a heading path."""

    heading_path: tuple[str, ...]
    start: int
    end: int


def sentence_spans(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Character spans of the sentences in ``text`` (shifted by ``offset``)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        if text[pos : m.start()].strip():
            spans.append((offset + pos, offset + m.start()))
        pos = m.end()
    if text[pos:].strip():
        spans.append((offset + pos, offset + len(text.rstrip())))
    return spans


def chunk_document(
    doc: ParsedDocument,
    count_tokens: Callable[[str], int],
    max_tokens: int = 180,
    overlap_tokens: int = 30,
) -> list[Span]:
    """Split a parsed document into spans of at most ``max_tokens`` (best effort for huge sentences)."""
    spans: list[Span] = []
    group: list[Section] = []
    group_tokens = 0

    def flush() -> None:
        nonlocal group_tokens
        if group:
            spans.append(Span(group[0].heading_path, group[0].start, group[-1].end))
            group.clear()
            group_tokens = 0

    for section in doc.sections:
        header_cost = count_tokens(" ".join((doc.title, *section.heading_path))) + 2
        budget = max(16, max_tokens - header_cost)
        tokens = count_tokens(section.text)
        # Sections of one chunk share a heading path and follow each other directly (blocks are joined
        # by one blank line); a gap means a heading came between them, even one with the same text.
        adjacent = bool(group) and section.start == group[-1].end + 2
        if group and (
            not adjacent or section.heading_path != group[0].heading_path or group_tokens + tokens > budget
        ):
            flush()
        if tokens > budget:
            spans.extend(_split_long(doc, section, count_tokens, budget, overlap_tokens))
            continue
        group.append(section)
        group_tokens += tokens
    flush()
    return spans


def _split_long(
    doc: ParsedDocument,
    section: Section,
    count_tokens: Callable[[str], int],
    budget: int,
    overlap_tokens: int,
) -> Iterator[Span]:
    sentences = sentence_spans(section.text, section.start)
    costs = [count_tokens(doc.text[s:e]) for s, e in sentences]
    i = 0
    while i < len(sentences):
        j, used = i, 0
        while j < len(sentences) and (j == i or used + costs[j] <= budget):
            used += costs[j]
            j += 1
        yield Span(section.heading_path, sentences[i][0], sentences[j - 1][1])
        if j >= len(sentences):
            break
        # step back over up to `overlap_tokens` worth of sentences so context carries over
        back, k = 0, j
        while k - 1 > i and back + costs[k - 1] <= overlap_tokens:
            k -= 1
            back += costs[k]
        i = k


def embedding_text(title: str, heading_path: tuple[str, ...], text: str) -> str:
    """What the embedder sees for a chunk: its context (title and headings) then its text."""
    context = " > ".join(h for h in (title, *heading_path) if h)
    if heading_path and heading_path[0] == title:
        context = " > ".join(heading_path)
    return f"{context}\n{text}" if context else text
