"""A :class:`ChunkFilter` as a SQL condition on ``gw_chunks`` rows, and ids that remember their filter.

The retrieval code asks the document store for the ids a filter admits and hands them to the vector
store (``VectorStore.query(..., allowed=ids)``). The PostgreSQL document store returns
:class:`FilteredIds`: the ids themselves (any consumer may use them as a plain array) that also carry the
filter, so the PostgreSQL vector store puts the filter's condition inside its vector query, where the
GIN indexes on the array columns and the HNSW iterative scan work together, instead of shipping the ids
back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from groundwork.stores.protocols import ChunkFilter, IdArray


class FilteredIds(np.ndarray):  # type: ignore[type-arg]
    """An int64 id array that also carries the :class:`ChunkFilter` that selected it."""

    chunk_filter: ChunkFilter | None

    def __new__(cls, ids: IdArray, chunk_filter: ChunkFilter) -> FilteredIds:
        obj = np.asarray(ids, dtype=np.int64).view(cls)
        obj.chunk_filter = chunk_filter
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        # slices and copies are plain subsets: they no longer match the filter
        self.chunk_filter = None


def filter_condition(flt: ChunkFilter, alias: str = "c") -> tuple[sql.Composable, list[Any]]:
    """``(condition, params)`` admitting the chunks of documents that ``flt`` admits.

    Always excludes bare vectors (rows without a document). An empty ``groups`` or ``tags`` tuple admits
    nothing, as in the embedded store.
    """
    a = sql.Identifier(alias)
    parts: list[sql.Composable] = [sql.SQL("{}.document_id IS NOT NULL").format(a)]
    params: list[Any] = []
    if flt.collection is not None:
        parts.append(sql.SQL("{}.collection = %s").format(a))
        params.append(flt.collection)
    for column, values in (("groups", flt.groups), ("tags", flt.tags)):
        if values is not None:  # the document carries any of the values
            parts.append(sql.SQL("{}.{} && %s::text[]").format(a, sql.Identifier(column)))
            params.append(list(values))
    if flt.source_prefix is not None:
        parts.append(sql.SQL("starts_with({}.source, %s)").format(a))
        params.append(flt.source_prefix)
    if flt.modified_after is not None:
        parts.append(sql.SQL("{}.modified_at >= %s").format(a))
        params.append(flt.modified_after)
    if flt.modified_before is not None:
        parts.append(sql.SQL("{}.modified_at < %s").format(a))
        params.append(flt.modified_before)
    return sql.SQL(" AND ").join(parts), params
