"""The faiss index keeps its HNSW graph through changes: growth, tombstones, compaction, save and load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from groundwork.stores import faiss_index
from groundwork.stores.faiss_index import FaissVectorStore

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def index() -> FaissVectorStore:
    rng = np.random.default_rng(7)
    store = FaissVectorStore(DIM, exact_search_below=50)
    store.upsert(np.arange(1, 401, dtype=np.int64), unit(rng, 400))
    store.prepare()
    return store


def test_prepare_builds_the_graph_once_searches_will_use_it(index: FaissVectorStore) -> None:
    assert index._hnsw is not None and index._hnsw.ntotal == 400
    small = FaissVectorStore(DIM, exact_search_below=50)
    small.upsert(np.arange(1, 11, dtype=np.int64), unit(np.random.default_rng(1), 10))
    small.prepare()
    assert small._hnsw is None  # exact search serves ten vectors


def test_new_vectors_grow_the_graph_instead_of_rebuilding_it(index: FaissVectorStore) -> None:
    graph = index._hnsw
    v = unit(np.random.default_rng(3), 1)
    index.upsert(np.array([1000], dtype=np.int64), v)
    hits = index.query(v[0], 5)
    assert hits[0][0] == 1000 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert index._hnsw is graph and graph.ntotal == 401


def test_deleted_vectors_never_come_back_and_the_graph_stays(index: FaissVectorStore) -> None:
    graph = index._hnsw
    target = index.get_vectors(np.array([42], dtype=np.int64))[0]
    index.delete(np.array([42], dtype=np.int64))
    hits = index.query(target, 10)
    assert 42 not in [i for i, _ in hits] and len(hits) == 10
    assert index._hnsw is graph
    # an allowed list that names the deleted id does not revive it
    assert 42 not in [i for i, _ in index.query(target, 10, np.arange(1, 300, dtype=np.int64))]
    # replacing a vector: the old one is a tombstone, the new one is found
    v = unit(np.random.default_rng(9), 1)
    index.upsert(np.array([43], dtype=np.int64), v)
    assert index.query(v[0], 1)[0][0] == 43 and len(index) == 399


def test_many_deletes_compact_and_results_stay_exact(index: FaissVectorStore) -> None:
    rng = np.random.default_rng(11)
    gone = rng.choice(np.arange(1, 401), size=150, replace=False)
    index.delete(gone.astype(np.int64))
    assert len(index) == 250 and len(index._ids) == 250  # compacted: no tombstones left
    live = np.setdiff1d(np.arange(1, 401), gone)
    q = unit(rng, 1)[0]
    exact = live[np.argsort(-(index.get_vectors(live) @ q))[:5]]
    assert [i for i, _ in index.query(q, 5)][:3] == exact[:3].tolist()


def test_the_graph_is_saved_and_loaded_not_rebuilt(
    index: FaissVectorStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index.delete(np.array([5, 6], dtype=np.int64))
    index.save(tmp_path, generation=3)
    q = index.get_vectors(np.array([7], dtype=np.int64))[0]
    expected = index.query(q, 5)

    class Store:
        generation = 3

        def iter_vectors(self) -> list[tuple[np.ndarray, np.ndarray]]:
            raise AssertionError("rebuilt from the store")

    def no_build(*_: object) -> None:
        raise AssertionError("built a new graph")

    monkeypatch.setattr(faiss_index.faiss, "IndexHNSWFlat", no_build)
    loaded = FaissVectorStore(DIM, exact_search_below=50)
    assert loaded.load_or_rebuild(tmp_path, Store()) is False  # type: ignore[arg-type]
    assert loaded._hnsw is not None and len(loaded) == 398
    assert loaded.query(q, 5) == expected
    assert 5 not in [i for i, _ in loaded.query(index._vecs[index._ids.tolist().index(5)], 10)]


def test_ids_out_of_order_still_map_to_their_rows() -> None:
    rng = np.random.default_rng(5)
    store = FaissVectorStore(DIM, exact_search_below=10)
    vecs = unit(rng, 100)
    ids = np.arange(200, 100, -1, dtype=np.int64)  # descending
    store.upsert(ids, vecs)
    assert not store._sorted
    allowed = ids[::2]
    hits = store.query(vecs[0], 3, allowed)
    assert hits[0][0] == 200 and all(i in set(allowed.tolist()) for i, _ in hits)


def test_an_empty_upsert_between_others_changes_nothing() -> None:
    rng = np.random.default_rng(2)
    store = FaissVectorStore(DIM, exact_search_below=10)
    store.upsert(np.array([1, 2], dtype=np.int64), unit(rng, 2))
    store.upsert(np.zeros(0, dtype=np.int64), np.zeros((0, DIM), dtype=np.float32))  # an empty document
    v = unit(rng, 1)
    store.upsert(np.array([3], dtype=np.int64), v)
    assert len(store) == 3 and store.query(v[0], 1)[0][0] == 3


def _wait_for(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_an_index_follows_what_another_process_saved_in_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FaissVectorStore, "FOLLOW_INTERVAL_S", 0.0)
    rng = np.random.default_rng(11)
    vecs = unit(rng, 300)
    writer = FaissVectorStore(DIM, exact_search_below=50, directory=tmp_path)
    writer.upsert(np.arange(1, 201, dtype=np.int64), vecs[:200])
    writer.prepare()
    writer.flush(1)
    server = FaissVectorStore(DIM, exact_search_below=50, directory=tmp_path)
    server._load(tmp_path, json.loads((tmp_path / "vectors.meta.json").read_text()))
    server._seen = faiss_index._stat(tmp_path)

    writer.upsert(np.arange(201, 301, dtype=np.int64), vecs[200:])  # "the CLI" adds and deletes
    writer.delete(np.arange(1, 11, dtype=np.int64))
    writer.flush(2)
    assert _wait_for(lambda: server.query(vecs[250], 1) == [(251, pytest.approx(1.0, abs=1e-4))])
    assert len(server) == 290 and server._generation == 2
    assert server._hnsw is not None and server._hnsw.ntotal == 300  # the saved graph, not a rebuild
    assert all(i > 10 for i, _ in server.query(vecs[0], 20))

    server.upsert(np.asarray([400], dtype=np.int64), unit(rng, 1))  # a writer itself keeps its own rows
    writer.upsert(np.asarray([401], dtype=np.int64), unit(rng, 1))
    writer.flush(3)
    for _ in range(20):
        server.query(vecs[0], 1)
        time.sleep(0.01)
    assert server._generation == 2 and len(server) == 291


@pytest.mark.parametrize("shape", ["documents", "scattered", "unsorted", "with_deleted"])
def test_a_filtered_exact_search_equals_brute_force(shape: str) -> None:
    """Rows admitted in long runs (whole documents) are scored slice by slice: same top k, same scores."""
    rng = np.random.default_rng(11)
    store = FaissVectorStore(DIM, exact_search_below=10_000)
    vecs = unit(rng, 3_000)
    ids = np.arange(1, 3_001, dtype=np.int64)
    for start in range(0, 3_000, 100):  # 30 documents of 100 chunks
        store.upsert(ids[start : start + 100], vecs[start : start + 100])
    runs = [ids[s : s + int(rng.integers(20, 100))] for s in range(0, 3_000, 300)]
    allowed = {
        "documents": np.concatenate(runs),
        "scattered": np.sort(rng.choice(ids, 500, replace=False)),
        "unsorted": np.concatenate(runs[::-1]),
        "with_deleted": np.concatenate(runs),
    }[shape]
    deleted = set(allowed[5:40:3].tolist()) if shape == "with_deleted" else set()
    store.delete(np.asarray(sorted(deleted), dtype=np.int64))
    live = np.asarray([i for i in allowed.tolist() if i not in deleted])
    for q in unit(rng, 5):
        hits = store.query(q, 10, allowed)
        scores = vecs[live - 1] @ q
        best = np.argsort(-scores)[:10]
        assert [i for i, _ in hits] == live[best].tolist()
        assert np.allclose([s for _, s in hits], scores[best], atol=1e-5)
