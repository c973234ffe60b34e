"""Storage seams. Every backend implements these and passes the suites in ``groundwork.testing``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from groundwork.errors import StorageError
from groundwork.types import Chunk, Document

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


def checked_vectors(vectors: FloatArray, dimensions: int, holder: str, remedy: str) -> FloatArray:
    """``vectors`` as a contiguous float32 matrix of ``dimensions`` columns, or a StorageError naming the fix.

    ``holder`` names what holds them ("index", "store"); ``remedy`` what to do when they do not fit.
    """
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != dimensions:
        raise StorageError(
            f"vectors of shape {arr.shape} do not match the {holder}'s {dimensions} dimensions"
            f" (was the embedding model changed? {remedy})"
        )
    return arr


@dataclass(frozen=True, slots=True)
class ChunkFilter:
    """Which chunks a search may return. ``groups=None`` means no permission filter (admin).

    ``source_prefix`` keeps documents whose path starts with it; ``tags`` keeps documents carrying any of
    them; ``modified_after``/``modified_before`` bound the source's modification time (epoch seconds).
    """

    collection: str | None = None
    groups: tuple[str, ...] | None = None
    source_prefix: str | None = None
    tags: tuple[str, ...] | None = None
    modified_after: float | None = None
    modified_before: float | None = None

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f) is None for f in self.__slots__)


@dataclass(frozen=True, slots=True, eq=False)
class AllExcept:
    """The chunk ids a filter admits, given by their complement: every id up to ``upto`` except ``excluded``.

    :meth:`DocumentStore.allowed_chunk_ids` returns this instead of an id array when the filter admits most
    chunks (a collection filter in a store with a small second collection, a user whose groups admit most
    documents): building, passing and mapping a million admitted ids cost 160 ms at 1M chunks, the few
    excluded ones almost nothing. ``upto`` is the largest chunk id when the set was computed: chunk ids
    only grow, so a chunk written since (of a document the filter might not admit) is never admitted by
    this set. ``count`` is the number of admitted chunks then (``len()``); ``excluded`` is ascending.
    """

    excluded: IdArray
    upto: int
    count: int

    def __len__(self) -> int:
        return self.count

    def admits(self, ids: IdArray) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` the set admits."""
        ids = np.asarray(ids, dtype=np.int64)
        out: npt.NDArray[np.bool_] = (ids <= self.upto) & ~np.isin(ids, self.excluded)
        return out

    def among(self, ids: IdArray) -> IdArray:
        """The admitted ones of ``ids`` (same order): the id array this set stands for within ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        return ids[self.admits(ids)]


Allowed = IdArray | AllExcept
"""The ids a filter admits: an id array (ascending), or :class:`AllExcept` when its complement is smaller."""


@runtime_checkable
class VectorStore(Protocol):
    """Nearest-neighbour search over normalised vectors keyed by integer ids (inner product)."""

    def upsert(self, ids: IdArray, vectors: FloatArray) -> None:
        """Add or replace vectors."""

    def delete(self, ids: IdArray) -> None:
        """Remove vectors; unknown ids are ignored."""

    def query(self, vector: FloatArray, k: int, allowed: Allowed | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest ids with their similarity, restricted to ``allowed`` when given."""

    def get_vectors(self, ids: IdArray) -> FloatArray:
        """The stored vectors of ``ids`` (rows in the same order); unknown ids raise ``KeyError``."""

    def flush(self, generation: int) -> None:
        """Persist what a restart needs, recording the document store's ``generation`` (no-op if none)."""

    def __len__(self) -> int: ...


@runtime_checkable
class DocumentStore(Protocol):
    """Documents, chunks (with their vectors) and a keyword index, written one document at a time."""

    def write_document(self, document: Document, chunks: Sequence[Chunk], vectors: FloatArray) -> IdArray:
        """Replace the document (same id) with this one in one transaction; returns the chunks' ids."""

    def delete_document(self, document_id: str) -> IdArray:
        """Delete a document and its chunks in one transaction; returns the deleted chunks' ids."""

    def get_document(self, document_id: str) -> Document | None: ...

    def find_document(self, collection: str, source: str) -> Document | None: ...

    def list_documents(self, collection: str | None = None) -> list[Document]: ...

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]: ...

    def chunk_ids_of(self, document_id: str) -> IdArray:
        """Ids of a document's chunks."""

    def collections(self) -> dict[str, int]:
        """Collection name -> number of documents."""

    def allowed_chunk_ids(self, flt: ChunkFilter) -> Allowed | None:
        """Ids a filter admits (an array, or :class:`AllExcept`), or ``None`` when it admits every chunk."""

    def keyword_search(
        self, query: str, k: int, flt: ChunkFilter, match: str | None = None
    ) -> list[tuple[int, float]]:
        """BM25 search; returns ``(chunk id, score)`` with higher scores better.

        ``match`` is a ready FTS5 query (weighted phrases from feedback) used instead of ``query``.
        """

    def iter_vectors(self, batch: int = 4096) -> Sequence[tuple[IdArray, FloatArray]]:
        """Every stored vector, for rebuilding a vector index."""

    @property
    def generation(self) -> int:
        """A counter bumped by every committed write; derived indexes record it."""

    def close(self) -> None:
        """Release the store's files or connections."""
