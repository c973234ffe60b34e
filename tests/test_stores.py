"""Behavioural tests for the embedded stores: SQLiteDocumentStore and FaissVectorStore."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from groundwork.errors import StorageError
from groundwork.models.fake import FakeEmbedder
from groundwork.stores.faiss_index import FaissVectorStore
from groundwork.stores.protocols import ChunkFilter, DocumentStore, VectorStore
from groundwork.stores.sqlite import MIGRATIONS, SQLiteDocumentStore, fts_query
from groundwork.types import Chunk, Document

DIM = 32
EMBEDDER = FakeEmbedder(dimensions=DIM)


def make_doc(
    doc_id: str,
    texts: list[str],
    *,
    collection: str = "default",
    source: str | None = None,
    groups: tuple[str, ...] = (),
    title: str = "Title",
    version: str = "v1",
) -> tuple[Document, list[Chunk], np.ndarray]:
    source = source or f"{doc_id}.md"
    document = Document(
        id=doc_id,
        collection=collection,
        source=source,
        title=title,
        content_hash=f"hash-{version}",
        media_type="text/markdown",
        groups=groups,
        ingested_at=1700000000.0,
    )
    chunks, offset = [], 0
    for i, text in enumerate(texts):
        chunks.append(
            Chunk(
                id=f"{doc_id}-{version}-{i}",
                document_id=doc_id,
                collection=collection,
                ordinal=i,
                text=text,
                heading_path=(title, f"Part {i}"),
                start=offset,
                end=offset + len(text),
            )
        )
        offset += len(text) + 2
    return document, chunks, EMBEDDER.embed(texts)


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteDocumentStore(tmp_path / "x.sqlite3")
    yield s
    s.close()


def hit_ids(hits: list[tuple[int, float]]) -> list[int]:
    return [i for i, _ in hits]


# -- SQLiteDocumentStore ---------------------------------------------------------------------------


def test_sqlite_store_satisfies_protocol(store: SQLiteDocumentStore) -> None:
    assert isinstance(store, DocumentStore)
    assert isinstance(FaissVectorStore(DIM), VectorStore)


def test_write_then_get_find_list(store: SQLiteDocumentStore) -> None:
    assert store.generation == 0
    doc, chunks, vecs = make_doc(
        "d1",
        ["Alpha paragraph about llamas.", "Beta paragraph about yaks."],
        collection="zoo",
        groups=("hr", "eng"),
    )
    ids = store.write_document(doc, chunks, vecs)
    assert ids.dtype == np.int64 and len(ids) == 2 and len(set(ids.tolist())) == 2
    assert store.generation == 1

    got = store.get_document("d1")
    assert got is not None
    assert got.chunk_count == 2
    assert got.groups == ("hr", "eng")
    assert (got.collection, got.source, got.title, got.content_hash) == ("zoo", "d1.md", "Title", "hash-v1")
    assert got.ingested_at == doc.ingested_at
    assert store.find_document("zoo", "d1.md") == got
    assert store.find_document("other", "d1.md") is None
    assert store.get_document("missing") is None
    assert store.list_documents() == [got]
    assert store.list_documents("zoo") == [got]
    assert store.list_documents("nope") == []
    assert store.collections() == {"zoo": 1}

    chunk_map = store.get_chunks([int(i) for i in ids])
    assert set(chunk_map) == set(ids.tolist())
    first = chunk_map[int(ids[0])]
    assert first == Chunk(
        id="d1-v1-0",
        document_id="d1",
        collection="zoo",
        ordinal=0,
        text="Alpha paragraph about llamas.",
        heading_path=("Title", "Part 0"),
        start=0,
        end=len("Alpha paragraph about llamas."),
        source="d1.md",
        title="Title",
    )
    assert sorted(store.chunk_ids_of("d1").tolist()) == sorted(ids.tolist())
    assert store.get_chunks([]) == {}
    assert store.get_chunks([999_999]) == {}


def test_vectors_round_trip_through_iter_vectors(store: SQLiteDocumentStore) -> None:
    doc, chunks, vecs = make_doc("d1", ["one fish", "two fish", "red fish"])
    ids = store.write_document(doc, chunks, vecs)
    batches = store.iter_vectors(batch=2)
    assert [len(b[0]) for b in batches] == [2, 1]
    all_ids = np.concatenate([b[0] for b in batches])
    all_vecs = np.vstack([b[1] for b in batches])
    assert all_ids.tolist() == sorted(ids.tolist())
    order = np.argsort(ids)
    np.testing.assert_array_equal(all_vecs, vecs[order].astype(np.float32))


def test_chunk_vector_count_mismatch_raises(store: SQLiteDocumentStore) -> None:
    doc, chunks, vecs = make_doc("d1", ["a b", "c d"])
    with pytest.raises(StorageError):
        store.write_document(doc, chunks, vecs[:1])
    assert store.get_document("d1") is None
    assert store.generation == 0


def test_replacing_a_document_removes_old_chunks(store: SQLiteDocumentStore) -> None:
    old, old_chunks, old_vecs = make_doc("d1", ["The zeppelin leaves at dawn.", "Bring a kazoo."])
    old_ids = store.write_document(old, old_chunks, old_vecs)
    assert hit_ids(store.keyword_search("zeppelin", 5, ChunkFilter())) == [int(old_ids[0])]

    new, new_chunks, new_vecs = make_doc("d1", ["The hovercraft leaves at noon."], version="v2")
    new_ids = store.write_document(new, new_chunks, new_vecs)
    assert store.generation == 2
    assert not set(new_ids.tolist()) & set(old_ids.tolist())
    assert store.get_chunks([int(i) for i in old_ids]) == {}
    assert store.keyword_search("zeppelin", 5, ChunkFilter()) == []
    assert store.keyword_search("kazoo", 5, ChunkFilter()) == []
    assert hit_ids(store.keyword_search("hovercraft", 5, ChunkFilter())) == new_ids.tolist()
    got = store.get_document("d1")
    assert got is not None and got.chunk_count == 1 and got.content_hash == "hash-v2"
    assert len(store.list_documents()) == 1
    assert store.chunk_ids_of("d1").tolist() == new_ids.tolist()
    assert sum(len(b[0]) for b in store.iter_vectors()) == 1


def test_replacing_a_document_updates_its_groups(store: SQLiteDocumentStore) -> None:
    store.write_document(*make_doc("d1", ["Quarterly marmalade figures."], groups=("hr",)))
    store.write_document(*make_doc("d1", ["Quarterly marmalade figures."], groups=("eng",), version="v2"))
    assert store.keyword_search("marmalade", 5, ChunkFilter(groups=("hr",))) == []
    assert len(store.keyword_search("marmalade", 5, ChunkFilter(groups=("eng",)))) == 1


def test_delete_document_removes_everything(store: SQLiteDocumentStore) -> None:
    ids = store.write_document(*make_doc("d1", ["Walrus tusks grow.", "Penguins waddle."], groups=("hr",)))
    keep_ids = store.write_document(*make_doc("d2", ["Penguins also swim."]))
    generation = store.generation
    deleted = store.delete_document("d1")
    assert sorted(deleted.tolist()) == sorted(ids.tolist())
    assert store.generation == generation + 1
    assert store.get_document("d1") is None
    assert store.find_document("default", "d1.md") is None
    assert [d.id for d in store.list_documents()] == ["d2"]
    assert store.get_chunks([int(i) for i in ids]) == {}
    assert store.chunk_ids_of("d1").tolist() == []
    assert store.keyword_search("walrus", 5, ChunkFilter()) == []
    assert hit_ids(store.keyword_search("penguins", 5, ChunkFilter())) == keep_ids.tolist()
    remaining = np.concatenate([b[0] for b in store.iter_vectors()])
    assert remaining.tolist() == keep_ids.tolist()
    allowed = store.allowed_chunk_ids(ChunkFilter(groups=("hr",)))
    assert allowed is not None and allowed.tolist() == []
    # deleting an unknown document returns no ids
    assert store.delete_document("nope").tolist() == []


def test_keyword_search_finds_rare_word_and_ranks(store: SQLiteDocumentStore) -> None:
    texts = [
        "General information about the office kitchen.",
        "The quokka mascot appears on every quokka sticker and quokka mug.",
        "Another paragraph mentions a quokka once among many other words about nothing in particular.",
        "Unrelated text about parking.",
    ]
    ids = store.write_document(*make_doc("d1", texts))
    hits = store.keyword_search("Where is the QUOKKA?", 10, ChunkFilter())
    assert hit_ids(hits) == [int(ids[1]), int(ids[2])]
    assert hits[0][1] > hits[1][1] > 0  # higher is better
    assert len(store.keyword_search("quokka", 1, ChunkFilter())) == 1
    # porter stemming: "stickers" matches "sticker"
    assert hit_ids(store.keyword_search("stickers", 10, ChunkFilter())) == [int(ids[1])]
    # only stopwords -> no query at all
    assert store.keyword_search("what is the", 10, ChunkFilter()) == []


def test_keyword_search_matches_title_and_headings(store: SQLiteDocumentStore) -> None:
    ids = store.write_document(*make_doc("d1", ["Nothing special here."], title="Xylophone Handbook"))
    assert hit_ids(store.keyword_search("xylophone", 5, ChunkFilter())) == ids.tolist()


def test_keyword_search_respects_collection_filter(store: SQLiteDocumentStore) -> None:
    a = store.write_document(*make_doc("a", ["The narwhal report."], collection="sea"))
    b = store.write_document(*make_doc("b", ["Another narwhal report."], collection="land"))
    assert hit_ids(store.keyword_search("narwhal", 10, ChunkFilter(collection="sea"))) == a.tolist()
    assert hit_ids(store.keyword_search("narwhal", 10, ChunkFilter(collection="land"))) == b.tolist()
    assert store.keyword_search("narwhal", 10, ChunkFilter(collection="air")) == []
    assert sorted(hit_ids(store.keyword_search("narwhal", 10, ChunkFilter()))) == sorted([*a, *b])
    allowed = store.allowed_chunk_ids(ChunkFilter(collection="sea"))
    assert allowed is not None and allowed.tolist() == a.tolist()
    assert store.allowed_chunk_ids(ChunkFilter()) is None
    assert store.collections() == {"sea": 1, "land": 1}


def test_keyword_search_respects_groups(store: SQLiteDocumentStore) -> None:
    hr = store.write_document(*make_doc("hr", ["Salary bands for the armadillo team."], groups=("hr",)))
    both = store.write_document(*make_doc("both", ["Armadillo onboarding."], groups=("hr", "eng")))
    nobody = store.write_document(*make_doc("admin", ["Armadillo admin notes."], groups=()))

    def search(groups: tuple[str, ...] | None) -> set[int]:
        return set(hit_ids(store.keyword_search("armadillo", 10, ChunkFilter(groups=groups))))

    assert search(("eng",)) == set(both.tolist())
    assert search(("hr",)) == set(hr.tolist()) | set(both.tolist())
    assert search(("eng", "sales")) == set(both.tolist())
    assert search(()) == set()
    assert search(None) == set(hr.tolist()) | set(both.tolist()) | set(nobody.tolist())
    allowed = store.allowed_chunk_ids(ChunkFilter(groups=("eng",)))
    assert allowed is not None and allowed.tolist() == both.tolist()
    combined = store.allowed_chunk_ids(ChunkFilter(collection="other", groups=("hr",)))
    assert combined is not None and combined.tolist() == []


@pytest.mark.parametrize(
    "query",
    [
        'NOT "secret" OR (',
        "title:secret",
        "secret* AND b NEAR(c, d)",
        '"unbalanced secret',
        "^secret - minus",
        "{x} [secret] :z",
        ")(secret",
        "secret'",
    ],
)
def test_fts_syntax_is_neutralised(store: SQLiteDocumentStore, query: str) -> None:
    ids = store.write_document(*make_doc("d1", ["Plain text about a secret recipe."]))
    assert hit_ids(store.keyword_search(query, 5, ChunkFilter())) == ids.tolist()


def test_fts_query_quotes_terms_and_drops_stopwords() -> None:
    assert fts_query('NOT "x" OR (') == '"not" OR "x"'
    assert fts_query("What is the leave policy? leave!") == '"leave" OR "policy"'
    assert fts_query("the and of") is None
    assert fts_query("") is None


def test_before_commit_failure_keeps_previous_version(store: SQLiteDocumentStore) -> None:
    old_ids = store.write_document(*make_doc("d1", ["The original okapi text.", "Second okapi chunk."]))
    generation = store.generation
    before = store.get_document("d1")

    def crash() -> None:
        raise RuntimeError("simulated crash")

    new_doc, new_chunks, new_vecs = make_doc("d1", ["Replacement pangolin text."], version="v2")
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_document(new_doc, new_chunks, new_vecs, before_commit=crash)
    assert store.generation == generation
    assert store.get_document("d1") == before
    assert sorted(store.chunk_ids_of("d1").tolist()) == sorted(old_ids.tolist())
    old_texts = {c.text for c in store.get_chunks([int(i) for i in old_ids]).values()}
    assert old_texts == {"The original okapi text.", "Second okapi chunk."}
    assert sorted(hit_ids(store.keyword_search("okapi", 5, ChunkFilter()))) == sorted(old_ids.tolist())
    assert store.keyword_search("pangolin", 5, ChunkFilter()) == []
    # the store is still usable afterwards
    store.write_document(new_doc, new_chunks, new_vecs)
    assert store.generation == generation + 1
    assert len(store.keyword_search("pangolin", 5, ChunkFilter())) == 1


def test_before_commit_failure_on_a_new_document_leaves_nothing(store: SQLiteDocumentStore) -> None:
    def crash() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_document(*make_doc("d1", ["Ghost text."]), before_commit=crash)
    assert store.list_documents() == []
    assert store.generation == 0
    assert store.keyword_search("ghost", 5, ChunkFilter()) == []


def test_reopening_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    first = SQLiteDocumentStore(path)
    ids = first.write_document(*make_doc("d1", ["Persisted capybara facts."], groups=("hr",)))
    first.close()
    second = SQLiteDocumentStore(path)
    try:
        assert second.generation == 1
        doc = second.get_document("d1")
        assert doc is not None and doc.groups == ("hr",)
        assert second.get_chunks([int(ids[0])])[int(ids[0])].text == "Persisted capybara facts."
        assert hit_ids(second.keyword_search("capybara", 5, ChunkFilter(groups=("hr",)))) == ids.tolist()
        (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()  # every migration
        assert version == len(MIGRATIONS)
    finally:
        second.close()


def test_opening_a_non_database_raises_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite3"
    path.write_bytes(b"this is definitely not an sqlite database file" * 100)
    with pytest.raises(StorageError):
        SQLiteDocumentStore(path)


def test_keyword_search_finds_words_with_apostrophes(store: SQLiteDocumentStore) -> None:
    ids = store.write_document(*make_doc("d1", ["Ask Siobhan O'Brien about the rota."]))
    assert hit_ids(store.keyword_search("O'Brien", 5, ChunkFilter())) == ids.tolist()


def test_keyword_search_finds_non_ascii_words(store: SQLiteDocumentStore) -> None:
    ids = store.write_document(*make_doc("d1", ["The café in München opens at nine."]))
    assert hit_ids(store.keyword_search("café", 5, ChunkFilter())) == ids.tolist()


# -- FaissVectorStore ------------------------------------------------------------------------------


def _normalised(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute_force(ids: np.ndarray, vecs: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return ids[np.argsort(-(vecs @ q), kind="stable")[:k]].tolist()


def test_exact_search_returns_true_nearest_neighbours() -> None:
    rng = np.random.default_rng(1)
    vecs = _normalised(rng, 500, 16)
    ids = np.arange(10, 510, dtype=np.int64)
    index = FaissVectorStore(16)
    index.upsert(ids[:250], vecs[:250])
    index.upsert(ids[250:], vecs[250:])  # buffered appends are consolidated correctly
    assert len(index) == 500
    for q in _normalised(rng, 20, 16):
        hits = index.query(q, 7)
        assert hit_ids(hits) == _brute_force(ids, vecs, q, 7)
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        np.testing.assert_allclose(scores, np.sort(vecs @ q)[::-1][:7], rtol=1e-5)
    # a vector's nearest neighbour is itself
    assert index.query(vecs[42], 1)[0][0] == 52
    assert len(index.query(vecs[0], 10_000)) == 500
    assert index.query(vecs[0], 0) == []
    assert FaissVectorStore(16).query(vecs[0], 5) == []


def test_exact_search_with_allowed_filter() -> None:
    rng = np.random.default_rng(2)
    vecs = _normalised(rng, 200, 8)
    ids = np.arange(200, dtype=np.int64)
    index = FaissVectorStore(8)
    index.upsert(ids, vecs)
    allowed = np.array([3, 17, 42, 99, 150, 12345], dtype=np.int64)  # unknown ids are ignored
    q = _normalised(rng, 1, 8)[0]
    hits = index.query(q, 3, allowed)
    known = allowed[:-1]
    assert hit_ids(hits) == _brute_force(known, vecs[known], q, 3)
    assert index.query(q, 3, np.array([], dtype=np.int64)) == []
    assert index.query(q, 3, np.array([777], dtype=np.int64)) == []


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray, np.ndarray, FaissVectorStore]:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(30, 64))
    labels = rng.integers(0, 30, 3000)
    x = centres[labels] + 0.35 * rng.normal(size=(3000, 64))
    vecs = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(1000, 4000, dtype=np.int64)
    queries = vecs[rng.choice(3000, 40, replace=False)] + 0.1 * rng.normal(size=(40, 64)).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    index = FaissVectorStore(64, exact_search_below=0)  # always the HNSW graph
    index.upsert(ids, vecs)
    return ids, vecs, queries, index


def test_hnsw_recall_against_brute_force(clustered) -> None:  # type: ignore[no-untyped-def]
    ids, vecs, queries, index = clustered
    recalls = []
    for q in queries:
        got = hit_ids(index.query(q, 10))
        assert len(got) == 10 and len(set(got)) == 10
        recalls.append(len(set(got) & set(_brute_force(ids, vecs, q, 10))) / 10)
    assert np.mean(recalls) >= 0.9
    assert index._hnsw is not None  # the approximate path was really used


@pytest.mark.parametrize("n_allowed", [300, 1500])
def test_hnsw_respects_allowed_filter(clustered, n_allowed: int) -> None:  # type: ignore[no-untyped-def]
    ids, vecs, queries, index = clustered
    rng = np.random.default_rng(n_allowed)
    positions = rng.choice(len(ids), n_allowed, replace=False)
    allowed = ids[positions]
    allowed_set = set(allowed.tolist())
    recalls = []
    for q in queries:
        got = hit_ids(index.query(q, 10, allowed))
        assert set(got) <= allowed_set
        assert len(got) == 10
        recalls.append(len(set(got) & set(_brute_force(allowed, vecs[positions], q, 10))) / 10)
    assert np.mean(recalls) >= 0.9


def test_hnsw_returns_k_results_for_a_selective_filter(clustered) -> None:  # type: ignore[no-untyped-def]
    ids, _vecs, queries, index = clustered
    allowed = ids[np.random.default_rng(3).choice(len(ids), 20, replace=False)]
    for q in queries[:20]:
        got = hit_ids(index.query(q, 10, allowed))
        assert set(got) <= set(allowed.tolist())
        assert len(got) == 10


def test_delete_removes_ids() -> None:
    rng = np.random.default_rng(4)
    vecs = _normalised(rng, 50, 8)
    ids = np.arange(50, dtype=np.int64)
    for threshold in (20_000, 0):  # exact and HNSW paths
        index = FaissVectorStore(8, exact_search_below=threshold)
        index.upsert(ids, vecs)
        index.query(vecs[0], 5)  # build the graph before deleting
        index.delete(np.array([0, 1, 2, 999], dtype=np.int64))
        assert len(index) == 47
        got = hit_ids(index.query(vecs[0], 50))
        assert not {0, 1, 2} & set(got)
        assert len(got) == 47
        keep = ids[3:]
        assert hit_ids(index.query(vecs[5], 1)) == [5]
        if threshold:
            assert got == _brute_force(keep, vecs[3:], vecs[0], 50)
        index.delete(np.array([], dtype=np.int64))
        assert len(index) == 47


def test_upsert_existing_id_replaces_vector() -> None:
    index = FaissVectorStore(4)
    eye = np.eye(4, dtype=np.float32)
    index.upsert(np.array([1, 2, 3], dtype=np.int64), eye[:3])
    index.upsert(np.array([1], dtype=np.int64), eye[3:4])  # id 1 now points along axis 3
    assert len(index) == 3
    assert hit_ids(index.query(eye[3], 1)) == [1]
    hits = dict(index.query(eye[0], 3))
    assert hits[1] == pytest.approx(0.0)
    assert max(hits, key=lambda i: hits[i]) != 1
    assert len(index.query(eye[0], 10)) == 3


def test_dimension_mismatch_raises_storage_error() -> None:
    index = FaissVectorStore(8)
    with pytest.raises(StorageError, match="dimensions"):
        index.upsert(np.array([1], dtype=np.int64), np.zeros((1, 9), dtype=np.float32))
    index.upsert(np.array([1], dtype=np.int64), np.ones((1, 8), dtype=np.float32))
    with pytest.raises(StorageError):
        index.query(np.zeros(4, dtype=np.float32), 1)
    with pytest.raises(StorageError):
        index.upsert(np.array([2], dtype=np.int64), np.zeros(8, dtype=np.float32))  # 1-d
    assert len(index) == 1


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
