"""The embedded stores (SQLiteDocumentStore, FaissVectorStore): the shared conformance suites, plus what
only they do (FTS5 query building, SQLite files, the faiss index's persistence)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groundwork.errors import StorageError
from groundwork.stores.faiss_index import FaissVectorStore
from groundwork.stores.protocols import AllExcept, ChunkFilter, DocumentStore, VectorStore
from groundwork.stores.sqlite import MIGRATIONS, SQLiteDocumentStore, fts_query
from groundwork.testing.stores import (
    DIM,
    EMBEDDER,
    DocumentStoreSuite,
    MakeVectors,
    VectorStoreSuite,
    admitted_ids,
    hit_ids,
    make_doc,
)


class TestSQLiteDocumentStore(DocumentStoreSuite):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[DocumentStore]:
        s = SQLiteDocumentStore(tmp_path / "x.sqlite3")
        yield s
        s.close()

    @pytest.fixture
    def reopen(self, tmp_path: Path) -> Iterator[Callable[[DocumentStore], DocumentStore]]:
        opened: list[SQLiteDocumentStore] = []

        def again(store: DocumentStore) -> DocumentStore:
            assert isinstance(store, SQLiteDocumentStore)
            store.close()
            opened.append(SQLiteDocumentStore(store.path))
            return opened[-1]

        yield again
        for s in opened:
            s.close()


class TestFaissVectorStore(VectorStoreSuite):
    @pytest.fixture(scope="class")
    def make_vectors(self) -> MakeVectors:
        def make(dimensions: int, exact_search_below: int = 20_000) -> VectorStore:
            return FaissVectorStore(dimensions, exact_search_below=exact_search_below)

        return make


# -- only the embedded stores ----------------------------------------------------------------------


def test_fts_query_quotes_terms_and_drops_stopwords() -> None:
    assert fts_query('NOT "x" OR (') == '"not" OR "x"'
    assert fts_query("What is the leave policy? leave!") == '"leave" OR "policy"'
    assert fts_query("the and of") is None
    assert fts_query("") is None


def test_reopened_file_has_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    SQLiteDocumentStore(path).close()
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == len(MIGRATIONS)


def test_opening_a_non_database_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite3"
    path.write_bytes(b"this is definitely not an sqlite database file" * 100)
    with pytest.raises(StorageError):
        SQLiteDocumentStore(path)


def test_faiss_walks_its_graph_when_told_to() -> None:
    rng = np.random.default_rng(9)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = FaissVectorStore(16, exact_search_below=0)
    index.upsert(np.arange(300, dtype=np.int64), vecs)
    assert len(index.query(vecs[0], 10)) == 10
    assert index._hnsw is not None  # the approximate path was really used


def test_allowed_chunk_ids_match_a_row_by_row_evaluation(tmp_path: Path) -> None:
    """Ids come from one id range per document; they must equal a plain per-chunk evaluation, also for
    documents whose ids are not consecutive (rewritten, or rows removed behind the store's back)."""
    rng = np.random.default_rng(4)
    store = SQLiteDocumentStore(tmp_path / "x.sqlite3")
    docs: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], float]] = {}

    def pick(values: list[str], most: int) -> tuple[str, ...]:
        return tuple(str(v) for v in rng.choice(values, size=int(rng.integers(0, most + 1)), replace=False))

    def write(doc_id: str, texts: list[str], version: str = "v1") -> None:
        collection, groups, tags, modified = docs[doc_id]
        source = f"{'a' if int(doc_id[1:]) % 2 else 'b'}/{doc_id}.md"
        doc = make_doc(
            doc_id, texts, collection=collection, source=source, groups=groups, tags=tags,
            modified_at=modified, version=version,
        )  # fmt: skip
        store.write_document(*doc)

    for n in range(40):
        collection, groups = str(rng.choice(["sea", "land"])), pick(["hr", "eng", "ops"], 2)
        docs[f"d{n}"] = (collection, groups, pick(["faq"], 1), float(rng.integers(100)))
        write(f"d{n}", [f"Chunk {i} of document {n}." for i in range(int(rng.integers(0, 6)))])
        if n % 7 == 3:  # an earlier document rewritten: its new ids come after later documents' ids
            write(f"d{n // 2}", ["Rewritten.", "Twice."], version="v2")
    db = store._db  # ids with holes: chunks removed directly (no API does this)
    db.execute("DELETE FROM chunks WHERE rowid IN (SELECT rowid FROM chunks WHERE ordinal = 1 LIMIT 5)")

    def expected(flt: ChunkFilter) -> list[int]:
        out = []
        for rowid, doc_id in db.execute("SELECT rowid, document_id FROM chunks ORDER BY rowid"):
            collection, groups, tags, modified = docs[doc_id]
            source = store.get_document(doc_id).source  # type: ignore[union-attr]
            if (
                (flt.collection is None or collection == flt.collection)
                and (flt.groups is None or bool(set(groups) & set(flt.groups)))
                and (flt.tags is None or bool(set(tags) & set(flt.tags)))
                and (flt.source_prefix is None or source.startswith(flt.source_prefix))
                and (flt.modified_after is None or modified >= flt.modified_after)
                and (flt.modified_before is None or modified < flt.modified_before)
            ):
                out.append(int(rowid))
        return out

    filters = [
        ChunkFilter(collection="sea"),
        ChunkFilter(collection="land", groups=("hr",)),
        ChunkFilter(groups=("eng", "ops")),
        ChunkFilter(groups=()),
        ChunkFilter(collection="sea", tags=("faq",)),
        ChunkFilter(tags=("faq", "other"), groups=("hr", "eng")),
        ChunkFilter(source_prefix="a/", modified_after=30.0),
        ChunkFilter(collection="land", modified_before=50.0, tags=("faq",)),
        ChunkFilter(collection="air"),
    ]
    for flt in filters:
        allowed = store.allowed_chunk_ids(flt)
        assert allowed is not None
        if not isinstance(allowed, AllExcept):
            assert allowed.dtype == np.int64
        assert admitted_ids(store, allowed) == expected(flt), flt
    assert isinstance(store.allowed_chunk_ids(ChunkFilter(groups=("eng", "ops", "hr"))), AllExcept)
    store.close()


def test_a_complement_is_reused_until_the_next_write(tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "x.sqlite3")
    ids = [store.write_document(*make_doc(f"d{i}", ["Tapir.", "Okapi."])) for i in range(3)]
    other = store.write_document(*make_doc("o", ["Elsewhere."], collection="other"))
    first = store.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert isinstance(first, AllExcept) and first.excluded.tolist() == other.tolist()
    assert store.allowed_chunk_ids(ChunkFilter(collection="default")) is first
    with pytest.raises(ValueError):
        first.excluded[0] = 0  # shared: read-only
    store.COMPLEMENT_SHARE = 1.0  # never a complement: the id list, not the kept complement
    listed = store.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert not isinstance(listed, AllExcept) and listed is not None
    assert listed.tolist() == sorted(int(i) for i in np.concatenate(ids))
    del store.COMPLEMENT_SHARE
    late = store.write_document(*make_doc("late", ["Late tapir."]))
    after_write = store.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert after_write is not first and after_write is not None
    assert admitted_ids(store, after_write) == sorted(int(i) for i in np.concatenate([*ids, late]))
    store.delete_document("d0")
    after_delete = store.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert after_delete is not None
    assert admitted_ids(store, after_delete) == sorted(int(i) for i in np.concatenate([*ids[1:], late]))
    store.close()


_DOCUMENT = st.tuples(
    st.sampled_from(["sea", "land"]),  # collection
    st.sets(st.sampled_from(["hr", "eng"])),  # groups
    st.integers(0, 5),  # chunks
    st.booleans(),  # deleted afterwards
)
_FILTER = st.builds(
    ChunkFilter,
    collection=st.none() | st.sampled_from(["sea", "land"]),
    groups=st.none() | st.sets(st.sampled_from(["hr", "eng", "ops"])).map(lambda g: tuple(sorted(g))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    documents=st.lists(_DOCUMENT, min_size=1, max_size=12), filters=st.lists(_FILTER, min_size=1, max_size=4)
)
def test_filters_on_random_stores_search_like_their_id_arrays(
    tmp_path_factory: pytest.TempPathFactory,
    documents: list[tuple[str, set[str], int, bool]],
    filters: list[ChunkFilter],
) -> None:
    """Whatever the representation (ids or their complement), a filter admits exactly the chunks of the
    documents it admits, deletes respected, and the vector search returns what the id array gives."""
    store = SQLiteDocumentStore(tmp_path_factory.mktemp("h") / "x.sqlite3")
    index = FaissVectorStore(DIM, exact_search_below=0)
    admitted: dict[str, tuple[str, set[str]]] = {}
    for n, (collection, groups, size, _deleted) in enumerate(documents):
        doc = make_doc(f"d{n}", [f"Chunk {i} of {n}." for i in range(size)], collection=collection,
                       groups=tuple(sorted(groups)))  # fmt: skip
        index.upsert(store.write_document(*doc), doc[2])
        admitted[f"d{n}"] = (collection, groups)
    for n, (*_, deleted) in enumerate(documents):
        if deleted:
            index.delete(store.delete_document(f"d{n}"))
            del admitted[f"d{n}"]
    for flt in filters:
        expected = sorted(
            int(i)
            for doc, (collection, groups) in admitted.items()
            if (flt.collection is None or flt.collection == collection)
            and (flt.groups is None or bool(groups & set(flt.groups)))
            for i in store.chunk_ids_of(doc)
        )
        allowed = store.allowed_chunk_ids(flt)
        if allowed is None:
            assert sorted(int(i) for d in admitted for i in store.chunk_ids_of(d)) == expected
            continue
        assert admitted_ids(store, allowed) == expected
        assert len(allowed) == len(expected)
        plain = np.asarray(expected, dtype=np.int64)
        for q in EMBEDDER.embed(["chunk one", "of two"]):
            assert index.query(q, 5, allowed) == index.query(q, 5, plain)
    store.close()


# -- persistence -----------------------------------------------------------------------------------


def _filled_store(path: Path) -> SQLiteDocumentStore:
    store = SQLiteDocumentStore(path)
    store.write_document(*make_doc("d1", ["Saving the index to disk.", "Reloading it later."]))
    store.write_document(*make_doc("d2", ["A second document with words.", "More words here.", "Last."]))
    return store


def _contents(index: FaissVectorStore) -> dict[int, tuple[float, ...]]:
    """id -> vector, read back through exact queries along each basis vector (score = component)."""
    columns: dict[int, list[float]] = {}
    for axis in np.eye(DIM, dtype=np.float32):
        for i, score in index.query(axis, 10_000):
            columns.setdefault(i, []).append(round(score, 5))
    assert all(len(v) == DIM for v in columns.values())
    return {i: tuple(v) for i, v in columns.items()}


def _index_from(store: SQLiteDocumentStore) -> FaissVectorStore:
    index = FaissVectorStore(DIM)
    for ids, vecs in store.iter_vectors():
        index.upsert(ids, vecs)
    return index


def test_save_and_load_without_rebuild(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    index = _index_from(store)
    index.save(tmp_path / "idx", store.generation)
    assert (tmp_path / "idx" / "vectors.npz").exists()
    assert not list((tmp_path / "idx").glob("*.tmp"))

    # prove it loads from the files: the store has nothing a rebuild could use for id 424242
    extra = FaissVectorStore(DIM)
    extra.upsert(np.array([424242], dtype=np.int64), np.ones((1, DIM), dtype=np.float32) / np.sqrt(DIM))
    extra.save(tmp_path / "idx2", store.generation)
    loaded_extra = FaissVectorStore(DIM)
    assert loaded_extra.load_or_rebuild(tmp_path / "idx2", store) is False
    assert hit_ids(loaded_extra.query(np.ones(DIM, dtype=np.float32), 5)) == [424242]

    loaded = FaissVectorStore(DIM)
    assert loaded.load_or_rebuild(tmp_path / "idx", store) is False
    assert len(loaded) == len(index) == 5
    assert _contents(loaded) == _contents(index)
    q = EMBEDDER.embed(["words here"])[0]
    assert loaded.query(q, 3) == index.query(q, 3)
    store.close()


def test_rebuild_when_generation_differs(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    index = _index_from(store)
    index.save(tmp_path / "idx", store.generation)
    # a write commits but the index is not saved (crash between the two)
    new_ids = store.write_document(*make_doc("d3", ["Written after the save."]))
    reloaded = FaissVectorStore(DIM)
    assert reloaded.load_or_rebuild(tmp_path / "idx", store) is True
    assert len(reloaded) == 6
    assert _contents(reloaded) == _contents(_index_from(store))
    assert hit_ids(reloaded.query(EMBEDDER.embed(["Written after the save."])[0], 1)) == new_ids.tolist()
    # the rebuild saved the new generation: next open loads
    again = FaissVectorStore(DIM)
    assert again.load_or_rebuild(tmp_path / "idx", store) is False
    assert _contents(again) == _contents(reloaded)
    store.close()


def test_rebuild_when_files_missing(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    index = FaissVectorStore(DIM)
    assert index.load_or_rebuild(tmp_path / "never-saved", store) is True
    assert _contents(index) == _contents(_index_from(store))
    assert (tmp_path / "never-saved" / "vectors.meta.json").exists()

    index.save(tmp_path / "idx", store.generation)
    (tmp_path / "idx" / "vectors.npz").unlink()
    other = FaissVectorStore(DIM)
    assert other.load_or_rebuild(tmp_path / "idx", store) is True
    assert _contents(other) == _contents(index)
    store.close()


@pytest.mark.parametrize(
    ("target", "payload"),
    [
        ("vectors.meta.json", b"{not json"),
        ("vectors.meta.json", b'{"count": 5}'),
        ("vectors.npz", b"garbage, not numpy"),
    ],
)
def test_rebuild_when_files_corrupt(tmp_path: Path, target: str, payload: bytes) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    _index_from(store).save(tmp_path / "idx", store.generation)
    (tmp_path / "idx" / target).write_bytes(payload)
    index = FaissVectorStore(DIM)
    assert index.load_or_rebuild(tmp_path / "idx", store) is True
    assert _contents(index) == _contents(_index_from(store))
    store.close()


def test_rebuild_when_saved_dimensions_differ(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    small = FaissVectorStore(4)
    small.upsert(np.array([1], dtype=np.int64), np.ones((1, 4), dtype=np.float32))
    small.save(tmp_path / "idx", store.generation)
    index = FaissVectorStore(DIM)
    assert index.load_or_rebuild(tmp_path / "idx", store) is True
    assert len(index) == 5
    # a store whose vectors do not fit the index is reported, not silently mixed in
    with pytest.raises(StorageError):
        FaissVectorStore(DIM + 1).load_or_rebuild(tmp_path / "idx-other", store)
    store.close()


def test_rebuild_when_npz_truncated(tmp_path: Path) -> None:
    store = _filled_store(tmp_path / "x.sqlite3")
    _index_from(store).save(tmp_path / "idx", store.generation)
    data = tmp_path / "idx" / "vectors.npz"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    index = FaissVectorStore(DIM)
    try:
        assert index.load_or_rebuild(tmp_path / "idx", store) is True
        assert len(index) == 5
    finally:
        store.close()
