"""Embedded vector index: exact search for small or heavily filtered sets, faiss HNSW beyond.

Measured on our machines (../shared/MEASUREMENTS.md, 100k x 384): faiss HNSW (M=32 here) answers in about
1 ms with recall 0.95-0.99, and an ID-selector keeps a filter inside the search; when the filter admits
few rows an exact search over just those rows is both faster and exact. This index holds a copy of every
vector in memory (a float32 matrix) for the exact path and feeds the HNSW graph from it.

The index is derived data: :class:`~groundwork.stores.sqlite.SQLiteDocumentStore` holds the vectors.
:meth:`FaissVectorStore.save` records the store's ``generation``; on open, a file whose generation differs
(a crash between the SQLite commit and the save) is discarded and the index rebuilt from SQLite.

Changes never throw the HNSW graph away (building it took 317 s at 1M vectors): new vectors are added to
it, deleted ones become tombstones that every search excludes, and the graph is saved beside the vectors
so a restart loads it. When tombstones pass a quarter of the rows, the rows are compacted and the graph is
rebuilt once. Rows keep the order of their ids (SQLite rowids grow), so a filter's id list maps to rows
with one vectorised binary search instead of a dict lookup per id (496 ms at 1M). A filter that admits
most chunks comes as its complement (:class:`~groundwork.stores.protocols.AllExcept`) and is searched
through a bitmap of the admitted rows (1M admitted ids as a list and an ``IDSelectorBatch``: 270 ms).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from groundwork.errors import StorageError
from groundwork.stores.protocols import (
    AllExcept,
    Allowed,
    DocumentStore,
    FloatArray,
    IdArray,
    checked_vectors,
)

try:  # faiss is a hard dependency, but keep the error explicit
    import faiss
except ImportError as exc:  # pragma: no cover
    raise StorageError("faiss-cpu is not installed: pip install faiss-cpu") from exc

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]


class FaissVectorStore:
    """The embedded :class:`~groundwork.stores.protocols.VectorStore`."""

    COMPACT_SHARE = 0.25
    """Compact (and rebuild the graph) when this share of rows are tombstones."""
    FOLLOW_INTERVAL_S = 1.0
    """How often a query may look for an index another process saved in the same directory."""

    def __init__(
        self,
        dimensions: int,
        exact_search_below: int = 20_000,
        hnsw_m: int = 32,
        ef_search: int = 128,
        directory: Path | None = None,
    ) -> None:
        self.dimensions = dimensions
        self.directory = directory
        self.exact_search_below = exact_search_below
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._lock = threading.RLock()
        self._generation: int | None = None  # of the files this process last loaded or saved
        self._seen: tuple[int, int] | None = None  # their metadata file's (mtime, size)
        self._dirty = False  # writes not saved yet
        self._checked = 0.0
        self._reloading = False
        self._reset()

    def _reset(self, ids: IdArray | None = None, vecs: FloatArray | None = None) -> None:
        self._ids = np.zeros(0, dtype=np.int64) if ids is None else ids.astype(np.int64)
        self._vecs = np.zeros((0, self.dimensions), dtype=np.float32) if vecs is None else vecs
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._row: dict[int, int] = {int(i): r for r, i in enumerate(self._ids)}
        self._sorted = bool(np.all(np.diff(self._ids) > 0))
        self._pending: list[tuple[IdArray, FloatArray]] = []
        self._hnsw: Any = None  # covers rows [0, ntotal); grown on demand, dropped only on compaction

    def __len__(self) -> int:
        return len(self._row)

    def _consolidate(self) -> None:
        # Appends are buffered so that ingesting n documents costs O(n), not O(n^2) copies.
        if self._pending:
            self._ids = np.concatenate([self._ids, *(i for i, _ in self._pending)])
            self._vecs = np.vstack([self._vecs, *(v for _, v in self._pending)])
            self._alive = np.concatenate([self._alive, np.ones(len(self._ids) - len(self._alive), bool)])
            self._pending = []

    def _check(self, vectors: FloatArray) -> FloatArray:
        return checked_vectors(vectors, self.dimensions, "index", "re-ingest into a new data dir")

    def upsert(self, ids: IdArray, vectors: FloatArray) -> None:
        vecs = self._check(vectors)
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return  # a document without chunks (nothing to add, and no empty run in the buffer)
        with self._lock:
            if any(int(i) in self._row for i in ids):
                self.delete(ids)
            start = len(self._ids) + sum(len(i) for i, _ in self._pending)
            last = self._pending[-1][0][-1] if self._pending else (self._ids[-1] if len(self._ids) else None)
            if len(ids) and ((last is not None and ids[0] <= last) or np.any(np.diff(ids) <= 0)):
                self._sorted = False
            self._pending.append((ids, vecs))
            self._dirty = True
            for offset, i in enumerate(ids):
                self._row[int(i)] = start + offset

    def delete(self, ids: IdArray) -> None:
        with self._lock:
            self._consolidate()
            rows = [self._row.pop(int(i)) for i in ids if int(i) in self._row]
            if not rows:
                return
            self._dirty = True
            self._alive[rows] = False
            dead = len(self._ids) - len(self._row)
            if dead > self.COMPACT_SHARE * len(self._ids):
                self._compact()

    def _compact(self) -> None:
        keep = self._alive
        self._reset(self._ids[keep], self._vecs[keep])

    def get_vectors(self, ids: IdArray) -> FloatArray:
        with self._lock:
            self._consolidate()
            rows = [self._row[int(i)] for i in ids]
            return self._vecs[rows] if rows else np.zeros((0, self.dimensions), dtype=np.float32)

    def _graph(self) -> Any:
        """The HNSW graph over every row, built or grown as needed (caller holds the lock)."""
        if self._hnsw is None:
            index = faiss.IndexHNSWFlat(self.dimensions, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            self._hnsw = index
        if self._hnsw.ntotal < len(self._ids):
            self._hnsw.add(self._vecs[self._hnsw.ntotal :])
        return self._hnsw

    def prepare(self) -> None:
        """Build (or grow) the HNSW graph now when searches will use it, so no query waits for it."""
        with self._lock:
            self._consolidate()
            if len(self._row) > self.exact_search_below:
                self._graph()

    def _rows_of(self, allowed: IdArray) -> IdArray:
        """Rows of the live ids among ``allowed``."""
        allowed = np.asarray(allowed, dtype=np.int64)
        if self._sorted and len(self._ids):
            pos = np.minimum(np.searchsorted(self._ids, allowed), len(self._ids) - 1)
            rows: IdArray = pos[(self._ids[pos] == allowed) & self._alive[pos]]
            return rows
        return np.asarray([self._row[int(i)] for i in allowed if int(i) in self._row], dtype=np.int64)

    def query(self, vector: FloatArray, k: int, allowed: Allowed | None = None) -> list[tuple[int, float]]:
        q = self._check(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        self.follow()
        with self._lock:
            self._consolidate()
            if not self._row or k <= 0:
                return []
            mask = None  # the admitted rows as a mask, for a filter given by its complement
            if isinstance(allowed, AllExcept):
                mask = self._mask_of(allowed)
                n_allowed = int(np.count_nonzero(mask))
                rows = None
            else:
                rows = None if allowed is None else self._rows_of(allowed)
                if rows is None and len(self._row) < len(self._ids):
                    rows = np.flatnonzero(self._alive) if len(self._row) <= self.exact_search_below else None
                n_allowed = len(self._row) if rows is None else len(rows)
            if n_allowed == 0:
                return []
            # A selective filter (few rows, or a small share of the index) is searched exactly: faster
            # than HNSW there and never short of k results.
            if n_allowed <= self.exact_search_below or n_allowed < 0.05 * len(self._row):
                return self._exact(q[0], k, rows if mask is None else np.flatnonzero(mask))
            hits = self._approximate(q, k, rows, mask)
            if len(hits) < min(k, n_allowed):  # the graph walk ran out of allowed neighbours
                every = np.flatnonzero(self._alive if mask is None else mask)
                return self._exact(q[0], k, rows if rows is not None else every)
            return hits

    def _mask_of(self, allowed: AllExcept) -> BoolArray:
        """The live rows that ``allowed`` admits, as a boolean mask over the rows (caller holds the lock)."""
        mask = self._alive & (self._ids <= allowed.upto)
        mask[self._rows_of(allowed.excluded)] = False
        return mask

    RUN_LENGTH = 16
    """Score a filter's rows slice by slice when they form runs at least this long on average."""

    def _scores(self, q: FloatArray, rows: IdArray) -> FloatArray:
        """``vecs[rows] @ q``.

        A filter admits whole documents, whose chunks are consecutive rows, so the rows are usually a
        few long runs of consecutive rows: each run is scored in place on a slice of the matrix instead
        of first copying every admitted row (10,000 rows of 384 floats: about 4 ms of copying for 1 ms
        of arithmetic, and the product over the copy went to OpenBLAS's threads, which doubled the CPU
        and competed with the query for the cores; ``benchmarks/RESULTS.md``).
        """
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        if len(rows) < self.RUN_LENGTH * (len(breaks) + 1):
            out: FloatArray = self._vecs[rows] @ q
            return out
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(rows)]])
        scores = np.empty(len(rows), dtype=np.float32)
        for start, end, row in zip(starts.tolist(), ends.tolist(), rows[starts].tolist(), strict=True):
            np.matmul(self._vecs[row : row + end - start], q, out=scores[start:end])
        return scores

    def _exact(self, q: FloatArray, k: int, rows: IdArray | None) -> list[tuple[int, float]]:
        ids = self._ids if rows is None else self._ids[rows]
        scores = self._vecs @ q if rows is None else self._scores(q, rows)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(ids[t]), float(scores[t])) for t in top]

    def _approximate(
        self, q: FloatArray, k: int, rows: IdArray | None, mask: BoolArray | None = None
    ) -> list[tuple[int, float]]:
        index = self._graph()
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        params.efSearch = max(self.ef_search, k)
        bits = None
        if mask is not None:  # a bitmap of the admitted rows (``bits`` outlives the search that reads it)
            bits = np.packbits(mask, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
        elif rows is not None:
            params.sel = faiss.IDSelectorBatch(rows)  # HNSW ids are row positions
        elif len(self._row) < len(self._ids):  # tombstones: every live row
            params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.flatnonzero(~self._alive)))
        scores, positions = index.search(q, k, params=params)
        return [(int(self._ids[p]), float(s)) for p, s in zip(positions[0], scores[0], strict=True) if p >= 0]

    # -- persistence -------------------------------------------------------------------------------

    def flush(self, generation: int) -> None:
        """Save to the directory given at construction (no-op without one)."""
        if self.directory is not None:
            self.save(self.directory, generation)

    def save(self, directory: Path, generation: int) -> None:
        """Write the vectors, the graph if built, and the generation they reflect, atomically (rename)."""
        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._consolidate()
            tmp = directory / "vectors.npz.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=self._ids, vecs=self._vecs, alive=self._alive)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, directory / "vectors.npz")
            graph_rows = 0
            if self._hnsw is not None:
                graph = self._graph()
                faiss.write_index(graph, str(directory / "hnsw.faiss.tmp"))
                os.replace(directory / "hnsw.faiss.tmp", directory / "hnsw.faiss")
                graph_rows = int(graph.ntotal)
            meta = {
                "generation": generation,
                "count": len(self._ids),
                "dimensions": self.dimensions,
                "graph_rows": graph_rows,
                "hnsw_m": self.hnsw_m,
            }
            (directory / "vectors.meta.tmp").write_text(json.dumps(meta))
            os.replace(directory / "vectors.meta.tmp", directory / "vectors.meta.json")
            if directory == self.directory:
                self._generation, self._seen, self._dirty = generation, _stat(directory), False

    def _load(self, directory: Path, meta: dict[str, Any], *, background: bool = False) -> bool:
        """Replace the contents with the saved files that ``meta`` describes.

        ``background``: a reload while queries run. A missing graph is built before the swap (not under
        the lock, where queries would wait for it), and the swap is skipped (``False``) if this process
        has written since.
        """
        with np.load(directory / "vectors.npz") as data:
            ids, vecs = data["ids"], data["vecs"].astype(np.float32)
            alive = data["alive"] if "alive" in data else np.ones(len(ids), dtype=bool)
        if len(ids) != meta["count"] or vecs.shape != (len(ids), self.dimensions) or len(alive) != len(ids):
            raise ValueError("vectors.npz does not match its metadata")
        graph = None
        if meta.get("graph_rows") == len(ids) and meta.get("hnsw_m") == self.hnsw_m and len(ids):
            graph = faiss.read_index(str(directory / "hnsw.faiss"))
            if graph.ntotal != len(ids) or graph.d != self.dimensions:
                graph = None
        if background and graph is None and int(alive.sum()) > self.exact_search_below:
            graph = faiss.IndexHNSWFlat(self.dimensions, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            graph.hnsw.efConstruction = 80
            graph.add(vecs)
        with self._lock:
            if background and self._dirty:
                return False
            self._reset(ids, vecs)
            self._alive = alive.astype(bool)
            self._row = {int(i): r for r, i in enumerate(ids) if self._alive[r]}
            self._hnsw = graph
            self._generation, self._dirty = int(meta["generation"]), False
            return True

    def follow(self) -> None:
        """Load, in the background, an index that another process saved in this directory since."""
        directory = self.directory
        now = time.monotonic()
        if directory is None or self._reloading or now - self._checked < self.FOLLOW_INTERVAL_S:
            return
        self._checked = now
        state = _stat(directory)
        if state is None or state == self._seen or self._dirty:
            return  # unchanged, or this process writes too: its own next save is the newer one
        self._reloading = True
        threading.Thread(
            target=self._reload, args=(directory, state), name="groundwork-vector-reload", daemon=True
        ).start()

    def _reload(self, directory: Path, state: tuple[int, int]) -> None:
        try:
            meta = json.loads((directory / "vectors.meta.json").read_text())
            fresh = meta["generation"] != self._generation and meta["dimensions"] == self.dimensions
            if fresh and self._load(directory, meta, background=True):
                log.info("vector index reloaded: generation %s, %s rows", meta["generation"], meta["count"])
            self._seen = state
        except Exception as exc:  # a save in progress (files of two generations): try again at the next look
            log.info("vector index not reloaded yet (%s); retrying", exc)
        finally:
            self._reloading = False

    def load_or_rebuild(self, directory: Path, store: DocumentStore) -> bool:
        """Load the saved index if it matches ``store.generation``, else rebuild it from ``store``.

        Returns ``True`` when it had to rebuild.
        """
        generation = store.generation
        try:
            state = _stat(directory)
            meta = json.loads((directory / "vectors.meta.json").read_text())
            if meta["generation"] == generation and meta["dimensions"] == self.dimensions:
                self._load(directory, meta)
                self._seen = state if directory == self.directory else None
                return False
        except Exception:  # missing, truncated or foreign files: the index is derived data, rebuild it
            pass
        with self._lock:
            self._reset()
            for ids, vecs in store.iter_vectors():
                self.upsert(ids, vecs)
        self.save(directory, generation)
        return True


def _stat(directory: Path) -> tuple[int, int] | None:
    """The saved metadata file's modification time and size, or ``None`` if there is none."""
    try:
        st = os.stat(directory / "vectors.meta.json")
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
