"""Frozen value types that cross Groundwork's seams (models, stores, RAG, API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Per-call options for a chat model. Unknown options are not accepted anywhere."""

    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """Cost in the deployment's currency (from its per-token prices); 0 when unpriced."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """The full result of a non-streamed chat call."""

    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One piece of a streamed chat call. The last chunk carries ``usage`` and ``finish_reason``."""

    delta: str
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Section:
    """A structural block of a parsed document: text under a heading path, with its span."""

    heading_path: tuple[str, ...]
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A loaded file: normalised text, title and structure, before chunking."""

    source: str
    title: str
    text: str
    sections: tuple[Section, ...]
    media_type: str


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document. ``groups`` are the groups allowed to read it (empty: admins only)."""

    id: str
    collection: str
    source: str
    title: str
    content_hash: str
    media_type: str
    chunk_count: int = 0
    groups: tuple[str, ...] = ()
    ingested_at: float = 0.0
    tags: tuple[str, ...] = ()
    modified_at: float = 0.0
    """When the source last changed (the file's mtime, or the upload time)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """A retrievable piece of a document. ``start``/``end`` index the document's normalised text."""

    id: str
    document_id: str
    collection: str
    ordinal: int
    text: str
    heading_path: tuple[str, ...]
    start: int
    end: int
    source: str = ""
    title: str = ""


@dataclass(frozen=True, slots=True)
class ScoredChunk:
    """A chunk with the scores retrieval gave it."""

    chunk: Chunk
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None


@dataclass(frozen=True, slots=True)
class Citation:
    """Where an answer's claim comes from: enough to open the source at the right place."""

    number: int
    document_id: str
    source: str
    title: str
    heading_path: tuple[str, ...]
    chunk_id: str
    start: int
    end: int
    score: float
    quote: str = ""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``groups`` scope what documents they may read."""

    name: str
    role: Literal["admin", "builder", "user"] = "user"
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


LOCAL_ADMIN = Principal(name="local", role="admin")
"""The principal of the CLI and the Python API on one machine: reads everything."""
