"""The PostgreSQL :class:`~groundwork.stores.protocols.VectorStore`: pgvector HNSW (cosine) over the chunks.

The vectors are the ``embedding`` column of ``gw_chunks``, written by the document store in the
document's transaction; this store searches them. Vectors are L2-normalised, so cosine similarity is the
inner product the protocol speaks of. How a query runs:

* a filter (the :class:`~groundwork.stores.postgres.filters.FilteredIds` the document store returns, or
  any id array) that admits at most ``exact_search_below`` chunks is searched exactly: the filter's
  index finds the rows, and they are sorted by distance (faster than the graph there, and exact);
* otherwise the HNSW index is walked with ``hnsw.iterative_scan = relaxed_order``, the filter checked on
  each row inside the same query, until ``k`` rows pass (or ``hnsw.max_scan_tuples``); the rows are
  re-sorted by distance. If the walk still returns fewer than ``k`` rows, the search is redone exactly.

``upsert`` of an id that is already stored with the same vector writes nothing (the ingestor hands the
vectors the document store has just written to ``upsert`` again). Ids without a document are "bare"
vectors, for using this store on its own; ``delete`` removes only bare vectors, since a document's chunk
vectors go with the document (``DocumentStore.delete_document``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from groundwork.errors import StorageError
from groundwork.stores.postgres.db import PostgresDatabase
from groundwork.stores.postgres.filters import filter_condition
from groundwork.stores.protocols import AllExcept, Allowed, FloatArray, IdArray, checked_vectors

_EXACT = sql.SQL(
    # OFFSET 0 keeps the planner from ordering through the HNSW index: this path is exact by design
    "SELECT id, 1 - d FROM (SELECT c.id, c.embedding <=> %s AS d FROM gw_chunks c WHERE {} OFFSET 0) t"
    " ORDER BY d, id LIMIT %s"
)
_APPROXIMATE = sql.SQL(
    "WITH r AS MATERIALIZED (SELECT c.id, c.embedding <=> %s AS d FROM gw_chunks c WHERE {}"
    " ORDER BY d LIMIT %s) SELECT id, 1 - d FROM r ORDER BY d, id"
)
# The table's size decides exact vs. graph for an unfiltered query: the planner's estimate when large,
# an exact count when small (cheap there).
_SIZE = (
    "SELECT CASE WHEN c.reltuples >= %s THEN c.reltuples::bigint ELSE (SELECT count(*) FROM gw_chunks) END"
    " FROM pg_class c WHERE c.oid = 'gw_chunks'::regclass"
)


COUNT_EXACTLY_BELOW = 100_000


class PostgresVectorStore:
    """Nearest-neighbour search in PostgreSQL with pgvector; see the module docstring for the plan."""

    def __init__(
        self,
        db: PostgresDatabase,
        dimensions: int,
        *,
        ef_search: int = 100,
        exact_search_below: int = 15_000,
    ) -> None:
        self.db = db
        self.dimensions = dimensions
        self.ef_search = ef_search
        self.exact_search_below = exact_search_below

    def __len__(self) -> int:
        """The number of vectors: exact below ``COUNT_EXACTLY_BELOW`` rows, else the planner's estimate.

        Retrieval asks on every unfiltered search; ``count(*)`` cost 10-20 ms at 100k rows.
        """
        with self.db.connection() as conn:
            row = conn.execute(_SIZE, (COUNT_EXACTLY_BELOW,)).fetchone()
        return int(row[0]) if row else 0

    def _check(self, vectors: FloatArray) -> FloatArray:
        return checked_vectors(vectors, self.dimensions, "store", "use a new database")

    def upsert(self, ids: IdArray, vectors: FloatArray) -> None:
        vecs = self._check(vectors)
        keys = [int(i) for i in ids]
        if len(keys) != len(vecs):
            raise StorageError(f"{len(keys)} ids but {len(vecs)} vectors")
        if not keys:
            return
        with self.db.connection() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO gw_chunks (id, embedding) VALUES (%s, %s) ON CONFLICT (id) DO UPDATE"
                    " SET embedding = EXCLUDED.embedding"
                    " WHERE gw_chunks.embedding IS DISTINCT FROM EXCLUDED.embedding",
                    list(zip(keys, vecs, strict=True)),
                )
            # explicit ids must not collide with the ids the document store draws later
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('gw_chunks', 'id'),"
                " GREATEST(%s, (SELECT last_value FROM gw_chunks_id_seq)))",
                (max(keys),),
            )

    def delete(self, ids: IdArray) -> None:
        keys = [int(i) for i in ids]
        if keys:
            with self.db.connection() as conn:
                conn.execute("DELETE FROM gw_chunks WHERE id = ANY(%s) AND document_id IS NULL", (keys,))

    def get_vectors(self, ids: IdArray) -> FloatArray:
        keys = [int(i) for i in ids]
        if not keys:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self.db.connection() as conn, conn.cursor(binary=True) as cur:
            rows = cur.execute("SELECT id, embedding FROM gw_chunks WHERE id = ANY(%s)", (keys,)).fetchall()
        found = {int(r[0]): r[1].to_numpy() for r in rows}
        return np.vstack([found[i] for i in keys]).astype(np.float32)  # KeyError for an unknown id

    def flush(self, generation: int) -> None:
        """Nothing to do: the vectors were committed with their document."""

    def query(self, vector: FloatArray, k: int, allowed: Allowed | None = None) -> list[tuple[int, float]]:
        q = self._check(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
        if k <= 0:
            return []
        condition: sql.Composable
        params: list[Any]
        n_allowed: int | None
        if allowed is None:
            condition, params, n_allowed = sql.SQL("TRUE"), [], None
        else:
            if not len(allowed):
                return []
            n_allowed = len(allowed)
            flt = getattr(allowed, "chunk_filter", None)
            if isinstance(allowed, AllExcept):  # every chunk id up to ``upto`` except a few
                condition = sql.SQL("c.id <= %s AND NOT (c.id = ANY(%s))")
                params = [allowed.upto, [int(i) for i in allowed.excluded]]
            elif flt is not None:
                condition, params = filter_condition(flt)
            else:
                condition, params = sql.SQL("c.id = ANY(%s)"), [[int(i) for i in allowed]]
        with self.db.connection() as conn:
            if n_allowed is None:
                # the estimate only chooses the plan: trusted once well above the threshold
                size = conn.execute(_SIZE, (max(2 * self.exact_search_below, 1_000),)).fetchone()
                n_allowed = int(size[0]) if size else 0
                if n_allowed == 0:
                    return []
            if n_allowed <= self.exact_search_below:
                return self._run(conn, _EXACT.format(condition), q, params, k)
            if k > self.ef_search:
                conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(k),))
            hits = self._run(conn, _APPROXIMATE.format(condition), q, params, k)
            if len(hits) < min(k, n_allowed):  # the walk ran out of rows passing the filter
                return self._run(conn, _EXACT.format(condition), q, params, k)
        return hits

    @staticmethod
    def _run(
        conn: Any, statement: sql.Composed, q: FloatArray, params: list[Any], k: int
    ) -> list[tuple[int, float]]:
        rows = conn.execute(statement, [q, *params, k]).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]
