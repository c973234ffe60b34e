"""Conformance suites for :class:`DocumentStore` and :class:`VectorStore`.

A backend's test module subclasses a suite and provides its fixtures; pytest then runs every ``test_``
method against that backend::

    class TestSQLiteDocuments(DocumentStoreSuite):
        @pytest.fixture
        def store(self, tmp_path): ...          # a fresh, empty store
        @pytest.fixture
        def reopen(self, tmp_path): ...         # close a store and open the same data again

    class TestFaissVectors(VectorStoreSuite):
        @pytest.fixture(scope="class")
        def make_vectors(self): ...             # (dimensions, exact_search_below) -> a fresh, empty store

Stores under test also accept ``write_document(..., before_commit=callable)``: the callable runs inside
the transaction, so a test can simulate a crash before the commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pytest

from groundwork.errors import StorageError
from groundwork.models.fake import FakeEmbedder
from groundwork.stores.protocols import (
    AllExcept,
    Allowed,
    ChunkFilter,
    DocumentStore,
    FloatArray,
    IdArray,
    VectorStore,
)
from groundwork.types import Chunk, Document

DIM = 32
EMBEDDER = FakeEmbedder(dimensions=DIM)

Written = tuple[Document, list[Chunk], FloatArray]


class MakeVectors(Protocol):
    """Builds a fresh, empty vector store."""

    def __call__(self, dimensions: int, exact_search_below: int = ...) -> VectorStore: ...


def make_doc(
    doc_id: str,
    texts: list[str],
    *,
    collection: str = "default",
    source: str | None = None,
    groups: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    modified_at: float = 0.0,
    title: str = "Title",
    version: str = "v1",
) -> Written:
    """A document with one chunk per text and the fake embedder's vectors (``DIM`` dimensions)."""
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
        tags=tags,
        modified_at=modified_at,
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


def hit_ids(hits: list[tuple[int, float]]) -> list[int]:
    """The ids of search hits, in order."""
    return [i for i, _ in hits]


def admitted_ids(store: DocumentStore, allowed: Allowed) -> list[int]:
    """The chunk ids ``allowed`` stands for, ascending (an :class:`AllExcept` is materialised)."""
    if isinstance(allowed, AllExcept):
        every = [ids for ids, _ in store.iter_vectors()]
        return sorted(allowed.among(np.concatenate(every) if every else np.zeros(0, np.int64)).tolist())
    return [int(i) for i in allowed]


def _write(store: Any, written: Written, before_commit: Callable[[], None] | None = None) -> IdArray:
    ids: IdArray = store.write_document(*written, before_commit=before_commit)
    return ids


class DocumentStoreSuite:
    """Behaviour every :class:`DocumentStore` has. Provide ``store`` and ``reopen`` fixtures."""

    @pytest.fixture
    def store(self) -> Iterator[DocumentStore]:
        raise NotImplementedError("the backend's test class provides a fresh, empty store")

    @pytest.fixture
    def reopen(self) -> Callable[[DocumentStore], DocumentStore]:
        raise NotImplementedError("the backend's test class closes a store and reopens its data")

    def test_satisfies_protocol(self, store: DocumentStore) -> None:
        assert isinstance(store, DocumentStore)

    def test_write_then_get_find_list(self, store: DocumentStore) -> None:
        assert store.generation == 0
        doc, chunks, vecs = make_doc(
            "d1", ["Alpha paragraph about llamas.", "Beta paragraph about yaks."], collection="zoo",
            groups=("hr", "eng"),
        )  # fmt: skip
        ids = store.write_document(doc, chunks, vecs)
        assert ids.dtype == np.int64 and len(ids) == 2 and len(set(ids.tolist())) == 2
        assert store.generation == 1
        got = store.get_document("d1")
        assert got is not None
        assert got.chunk_count == 2 and got.groups == ("hr", "eng")
        assert (got.collection, got.source, got.title, got.content_hash) == (
            "zoo",
            "d1.md",
            "Title",
            "hash-v1",
        )
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
        assert chunk_map[int(ids[0])] == Chunk(
            id="d1-v1-0", document_id="d1", collection="zoo", ordinal=0, text="Alpha paragraph about llamas.",
            heading_path=("Title", "Part 0"), start=0, end=len("Alpha paragraph about llamas."),
            source="d1.md", title="Title",
        )  # fmt: skip
        assert sorted(store.chunk_ids_of("d1").tolist()) == sorted(ids.tolist())
        assert store.get_chunks([]) == {}
        assert store.get_chunks([999_999]) == {}

    def test_tags_and_modification_time_round_trip(self, store: DocumentStore) -> None:
        store.write_document(*make_doc("d1", ["Text."], tags=("faq", "product"), modified_at=1234.5))
        got = store.get_document("d1")
        assert got is not None and got.tags == ("faq", "product") and got.modified_at == 1234.5

    def test_vectors_round_trip_through_iter_vectors(self, store: DocumentStore) -> None:
        doc, chunks, vecs = make_doc("d1", ["one fish", "two fish", "red fish"])
        ids = store.write_document(doc, chunks, vecs)
        batches = store.iter_vectors(batch=2)
        assert [len(b[0]) for b in batches] == [2, 1]
        all_ids = np.concatenate([b[0] for b in batches])
        all_vecs = np.vstack([b[1] for b in batches])
        assert all_ids.tolist() == sorted(ids.tolist())
        np.testing.assert_array_equal(all_vecs, vecs[np.argsort(ids)].astype(np.float32))

    def test_chunk_vector_count_mismatch_raises(self, store: DocumentStore) -> None:
        doc, chunks, vecs = make_doc("d1", ["a b", "c d"])
        with pytest.raises(StorageError):
            store.write_document(doc, chunks, vecs[:1])
        assert store.get_document("d1") is None
        assert store.generation == 0

    def test_replacing_a_document_removes_old_chunks(self, store: DocumentStore) -> None:
        old_ids = store.write_document(*make_doc("d1", ["The zeppelin leaves at dawn.", "Bring a kazoo."]))
        assert hit_ids(store.keyword_search("zeppelin", 5, ChunkFilter())) == [int(old_ids[0])]
        new_ids = store.write_document(*make_doc("d1", ["The hovercraft leaves at noon."], version="v2"))
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

    def test_replacing_a_document_updates_its_groups(self, store: DocumentStore) -> None:
        store.write_document(*make_doc("d1", ["Quarterly marmalade figures."], groups=("hr",)))
        store.write_document(*make_doc("d1", ["Quarterly marmalade figures."], groups=("eng",), version="v2"))
        assert store.keyword_search("marmalade", 5, ChunkFilter(groups=("hr",))) == []
        assert len(store.keyword_search("marmalade", 5, ChunkFilter(groups=("eng",)))) == 1

    def test_same_source_under_another_id_is_a_storage_error(self, store: DocumentStore) -> None:
        store.write_document(*make_doc("d1", ["First."], source="same.md"))
        with pytest.raises(StorageError):
            store.write_document(*make_doc("d2", ["Second."], source="same.md"))
        assert [d.id for d in store.list_documents()] == ["d1"]

    def test_delete_document_removes_everything(self, store: DocumentStore) -> None:
        ids = store.write_document(
            *make_doc("d1", ["Walrus tusks grow.", "Penguins waddle."], groups=("hr",))
        )
        keep_ids = store.write_document(*make_doc("d2", ["Penguins also swim."]))
        generation = store.generation
        assert sorted(store.delete_document("d1").tolist()) == sorted(ids.tolist())
        assert store.generation == generation + 1
        assert store.get_document("d1") is None
        assert store.find_document("default", "d1.md") is None
        assert [d.id for d in store.list_documents()] == ["d2"]
        assert store.get_chunks([int(i) for i in ids]) == {}
        assert store.chunk_ids_of("d1").tolist() == []
        assert store.keyword_search("walrus", 5, ChunkFilter()) == []
        assert hit_ids(store.keyword_search("penguins", 5, ChunkFilter())) == keep_ids.tolist()
        assert np.concatenate([b[0] for b in store.iter_vectors()]).tolist() == keep_ids.tolist()
        allowed = store.allowed_chunk_ids(ChunkFilter(groups=("hr",)))
        assert allowed is not None and admitted_ids(store, allowed) == []
        assert store.delete_document("nope").tolist() == []

    def test_keyword_search_finds_rare_word_and_ranks(self, store: DocumentStore) -> None:
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
        assert hit_ids(store.keyword_search("stickers", 10, ChunkFilter())) == [int(ids[1])]  # stemming
        assert store.keyword_search("what is the", 10, ChunkFilter()) == []  # only stop words

    def test_keyword_search_matches_title_and_headings(self, store: DocumentStore) -> None:
        ids = store.write_document(*make_doc("d1", ["Nothing special here."], title="Xylophone Handbook"))
        assert hit_ids(store.keyword_search("xylophone", 5, ChunkFilter())) == ids.tolist()

    def test_keyword_search_takes_a_weighted_feedback_expression(self, store: DocumentStore) -> None:
        ids = store.write_document(*make_doc("d1", ["Lemurs eat fruit.", "Tapirs eat leaves.", "Nothing."]))
        # the retrieval's feedback dialect: quoted phrases ORed, a repeated phrase weighs more
        hits = store.keyword_search("ignored", 5, ChunkFilter(), match='"tapirs" OR "tapirs" OR "lemurs"')
        assert hit_ids(hits) == [int(ids[1]), int(ids[0])]
        hits = store.keyword_search("ignored", 5, ChunkFilter(), match='"lemurs" OR "lemurs" OR "tapirs"')
        assert hit_ids(hits) == [int(ids[0]), int(ids[1])]
        assert store.keyword_search("tapirs", 5, ChunkFilter(), match='"zebra"') == []

    def test_keyword_search_respects_collection_filter(self, store: DocumentStore) -> None:
        a = store.write_document(*make_doc("a", ["The narwhal report."], collection="sea"))
        b = store.write_document(*make_doc("b", ["Another narwhal report."], collection="land"))
        assert hit_ids(store.keyword_search("narwhal", 10, ChunkFilter(collection="sea"))) == a.tolist()
        assert hit_ids(store.keyword_search("narwhal", 10, ChunkFilter(collection="land"))) == b.tolist()
        assert store.keyword_search("narwhal", 10, ChunkFilter(collection="air")) == []
        assert sorted(hit_ids(store.keyword_search("narwhal", 10, ChunkFilter()))) == sorted([*a, *b])
        allowed = store.allowed_chunk_ids(ChunkFilter(collection="sea"))
        assert allowed is not None and admitted_ids(store, allowed) == a.tolist()
        assert store.allowed_chunk_ids(ChunkFilter()) is None
        assert store.collections() == {"sea": 1, "land": 1}

    def test_a_filter_admitting_most_chunks(self, store: DocumentStore) -> None:
        big = [store.write_document(*make_doc(f"b{i}", ["Tapir one.", "Tapir two."])) for i in range(4)]
        small = store.write_document(*make_doc("s", ["Tapir elsewhere."], collection="other"))
        store.delete_document("b1")
        expected = sorted(int(i) for i in np.concatenate([big[0], big[2], big[3]]))
        allowed = store.allowed_chunk_ids(ChunkFilter(collection="default"))
        assert allowed is not None and len(allowed) == 6 and admitted_ids(store, allowed) == expected
        # a document written since is not admitted by the set computed before it (whatever its collection)
        late = store.write_document(*make_doc("late", ["Tapir late."], collection="other"))
        assert set(admitted_ids(store, allowed)).isdisjoint({*late.tolist(), *small.tolist()})
        allowed = store.allowed_chunk_ids(ChunkFilter(collection="other"))
        assert allowed is not None and admitted_ids(store, allowed) == sorted(
            [*small.tolist(), *late.tolist()]
        )

    def test_the_only_collection_admits_every_chunk(self, store: DocumentStore) -> None:
        store.write_document(*make_doc("a", ["Only one collection here."], collection="sea"))
        assert store.allowed_chunk_ids(ChunkFilter(collection="sea")) is None

    def test_keyword_search_respects_groups(self, store: DocumentStore) -> None:
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
        assert allowed is not None and admitted_ids(store, allowed) == both.tolist()
        combined = store.allowed_chunk_ids(ChunkFilter(collection="other", groups=("hr",)))
        assert combined is not None and admitted_ids(store, combined) == []

    def test_tags_prefix_and_dates_filter_both_ways(self, store: DocumentStore) -> None:
        faq = store.write_document(
            *make_doc("faq", ["Ocelot questions."], source="docs/faq.md", tags=("faq",), modified_at=100.0)
        )
        old = store.write_document(
            *make_doc("old", ["Ocelot history."], source="archive/old.md", modified_at=10.0)
        )

        def both(flt: ChunkFilter) -> tuple[set[int], set[int]]:
            allowed = store.allowed_chunk_ids(flt)
            assert allowed is not None
            return set(hit_ids(store.keyword_search("ocelot", 10, flt))), set(admitted_ids(store, allowed))

        assert both(ChunkFilter(tags=("faq", "other"))) == (set(faq.tolist()), set(faq.tolist()))
        assert both(ChunkFilter(tags=())) == (set(), set())
        assert both(ChunkFilter(source_prefix="docs/")) == (set(faq.tolist()), set(faq.tolist()))
        assert both(ChunkFilter(source_prefix="doc%")) == (set(), set())  # a literal prefix, no wildcards
        assert both(ChunkFilter(modified_after=50.0)) == (set(faq.tolist()), set(faq.tolist()))
        assert both(ChunkFilter(modified_before=50.0)) == (set(old.tolist()), set(old.tolist()))
        assert both(ChunkFilter(modified_after=10.0, modified_before=100.0)) == (set(old.tolist()),) * 2

    @pytest.mark.parametrize(
        "query",
        ['NOT "secret" OR (', "title:secret", "secret* AND b NEAR(c, d)", '"unbalanced secret',
         "^secret - minus", "{x} [secret] :z", ")(secret", "secret'", "secret & !x | y <-> z"],
    )  # fmt: skip
    def test_query_syntax_is_neutralised(self, store: DocumentStore, query: str) -> None:
        ids = store.write_document(*make_doc("d1", ["Plain text about a secret recipe."]))
        assert hit_ids(store.keyword_search(query, 5, ChunkFilter())) == ids.tolist()

    def test_before_commit_failure_keeps_previous_version(self, store: DocumentStore) -> None:
        old_ids = store.write_document(*make_doc("d1", ["The original okapi text.", "Second okapi chunk."]))
        generation = store.generation
        before = store.get_document("d1")

        def crash() -> None:
            raise RuntimeError("simulated crash")

        new = make_doc("d1", ["Replacement pangolin text."], version="v2")
        with pytest.raises(RuntimeError, match="simulated crash"):
            _write(store, new, before_commit=crash)
        assert store.generation == generation
        assert store.get_document("d1") == before
        assert sorted(store.chunk_ids_of("d1").tolist()) == sorted(old_ids.tolist())
        old_texts = {c.text for c in store.get_chunks([int(i) for i in old_ids]).values()}
        assert old_texts == {"The original okapi text.", "Second okapi chunk."}
        assert sorted(hit_ids(store.keyword_search("okapi", 5, ChunkFilter()))) == sorted(old_ids.tolist())
        assert store.keyword_search("pangolin", 5, ChunkFilter()) == []
        store.write_document(*new)  # the store is still usable afterwards
        assert store.generation == generation + 1
        assert len(store.keyword_search("pangolin", 5, ChunkFilter())) == 1

    def test_before_commit_failure_on_a_new_document_leaves_nothing(self, store: DocumentStore) -> None:
        def crash() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            _write(store, make_doc("d1", ["Ghost text."]), before_commit=crash)
        assert store.list_documents() == []
        assert store.generation == 0
        assert store.keyword_search("ghost", 5, ChunkFilter()) == []

    def test_reopening_keeps_data(
        self, store: DocumentStore, reopen: Callable[[DocumentStore], DocumentStore]
    ) -> None:
        ids = store.write_document(*make_doc("d1", ["Persisted capybara facts."], groups=("hr",)))
        second = reopen(store)
        assert second.generation == 1
        doc = second.get_document("d1")
        assert doc is not None and doc.groups == ("hr",)
        assert second.get_chunks([int(ids[0])])[int(ids[0])].text == "Persisted capybara facts."
        assert hit_ids(second.keyword_search("capybara", 5, ChunkFilter(groups=("hr",)))) == ids.tolist()

    def test_keyword_search_finds_words_with_apostrophes(self, store: DocumentStore) -> None:
        ids = store.write_document(*make_doc("d1", ["Ask Siobhan O'Brien about the rota."]))
        assert hit_ids(store.keyword_search("O'Brien", 5, ChunkFilter())) == ids.tolist()

    def test_keyword_search_finds_non_ascii_words(self, store: DocumentStore) -> None:
        ids = store.write_document(*make_doc("d1", ["The café in München opens at nine."]))
        assert hit_ids(store.keyword_search("café", 5, ChunkFilter())) == ids.tolist()
        assert hit_ids(store.keyword_search("München", 5, ChunkFilter())) == ids.tolist()


# -- vector stores ---------------------------------------------------------------------------------


def normalised(rng: np.random.Generator, n: int, dim: int) -> npt.NDArray[np.float32]:
    """``n`` random unit vectors."""
    x = rng.normal(size=(n, dim)).astype(np.float32)
    out: npt.NDArray[np.float32] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def brute_force(ids: IdArray, vecs: FloatArray, q: FloatArray, k: int) -> list[int]:
    """The exact top ``k`` ids by inner product."""
    result: list[int] = ids[np.argsort(-(vecs @ q), kind="stable")[:k]].tolist()
    return result


Clustered = tuple[IdArray, FloatArray, FloatArray, VectorStore]


class VectorStoreSuite:
    """Behaviour every :class:`VectorStore` has. Provide a class-scoped ``make_vectors`` fixture."""

    @pytest.fixture(scope="class")
    def make_vectors(self) -> MakeVectors:
        raise NotImplementedError("the backend's test class provides a factory of fresh stores")

    @pytest.fixture(scope="class")
    def clustered(self, make_vectors: MakeVectors) -> Clustered:
        """3,000 clustered 64-d vectors in a store that always walks its approximate index."""
        rng = np.random.default_rng(7)
        centres = rng.normal(size=(30, 64))
        labels = rng.integers(0, 30, 3000)
        x = centres[labels] + 0.35 * rng.normal(size=(3000, 64))
        vecs = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        ids = np.arange(1000, 4000, dtype=np.int64)
        noisy = vecs[rng.choice(3000, 40, replace=False)] + 0.1 * rng.normal(size=(40, 64)).astype(np.float32)
        queries = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
        index = make_vectors(64, exact_search_below=0)
        index.upsert(ids, vecs)
        return ids, vecs, queries, index

    def test_satisfies_protocol(self, make_vectors: MakeVectors) -> None:
        assert isinstance(make_vectors(8), VectorStore)

    def test_exact_search_returns_true_nearest_neighbours(self, make_vectors: MakeVectors) -> None:
        rng = np.random.default_rng(1)
        vecs = normalised(rng, 500, 16)
        ids = np.arange(10, 510, dtype=np.int64)
        index = make_vectors(16)
        index.upsert(ids[:250], vecs[:250])
        index.upsert(ids[250:], vecs[250:])
        assert len(index) == 500
        for q in normalised(rng, 20, 16):
            hits = index.query(q, 7)
            assert hit_ids(hits) == brute_force(ids, vecs, q, 7)
            scores = [s for _, s in hits]
            assert scores == sorted(scores, reverse=True)
            np.testing.assert_allclose(scores, np.sort(vecs @ q)[::-1][:7], rtol=1e-4, atol=1e-5)
        assert index.query(vecs[42], 1)[0][0] == 52  # a vector's nearest neighbour is itself
        assert len(index.query(vecs[0], 10_000)) == 500
        assert index.query(vecs[0], 0) == []
        assert make_vectors(16).query(vecs[0], 5) == []

    def test_exact_search_with_allowed_filter(self, make_vectors: MakeVectors) -> None:
        rng = np.random.default_rng(2)
        vecs = normalised(rng, 200, 8)
        ids = np.arange(200, dtype=np.int64)
        index = make_vectors(8)
        index.upsert(ids, vecs)
        allowed = np.array([3, 17, 42, 99, 150, 12345], dtype=np.int64)  # unknown ids are ignored
        q = normalised(rng, 1, 8)[0]
        known = allowed[:-1]
        assert hit_ids(index.query(q, 3, allowed)) == brute_force(known, vecs[known], q, 3)
        assert index.query(q, 3, np.array([], dtype=np.int64)) == []
        assert index.query(q, 3, np.array([777], dtype=np.int64)) == []

    @pytest.mark.parametrize("exact_search_below", [20_000, 0])
    def test_a_filter_given_by_its_complement(
        self, make_vectors: MakeVectors, exact_search_below: int
    ) -> None:
        """``AllExcept`` gives the same hits as the id array it stands for: deleted ids and ids above
        ``upto`` are not admitted."""
        rng = np.random.default_rng(6)
        vecs = normalised(rng, 600, 16)
        ids = np.arange(100, 700, dtype=np.int64)
        index = make_vectors(16, exact_search_below=exact_search_below)
        index.upsert(ids, vecs)
        deleted = ids[rng.choice(600, 30, replace=False)]
        index.delete(deleted)
        live = ids[~np.isin(ids, deleted)]
        for trial in range(6):
            excluded = np.sort(rng.choice(ids, int(rng.integers(0, 120)), replace=False))
            upto = int(rng.integers(500, 800))
            plain = live[(live <= upto) & ~np.isin(live, excluded)]
            allowed = AllExcept(excluded, upto, len(plain))
            for q in normalised(rng, 5, 16):
                hits = index.query(q, 10, allowed)
                assert hits == index.query(q, 10, plain), trial
                assert all(i <= upto and i not in set(excluded.tolist()) for i, _ in hits)
        assert index.query(vecs[0], 5, AllExcept(ids, int(ids[-1]), 1)) == []
        assert index.query(vecs[0], 5, AllExcept(np.zeros(0, np.int64), 99, 1)) == []

    def test_get_vectors_in_the_callers_order(self, make_vectors: MakeVectors) -> None:
        vecs = normalised(np.random.default_rng(5), 3, 8)
        index = make_vectors(8)
        index.upsert(np.array([7, 8, 9], dtype=np.int64), vecs)
        np.testing.assert_allclose(
            index.get_vectors(np.array([9, 7], dtype=np.int64)), vecs[[2, 0]], rtol=1e-6
        )
        assert index.get_vectors(np.array([], dtype=np.int64)).shape == (0, 8)
        with pytest.raises(KeyError):
            index.get_vectors(np.array([7, 12345], dtype=np.int64))

    def test_approximate_recall_against_brute_force(self, clustered: Clustered) -> None:
        ids, vecs, queries, index = clustered
        recalls = []
        for q in queries:
            got = hit_ids(index.query(q, 10))
            assert len(got) == 10 and len(set(got)) == 10
            recalls.append(len(set(got) & set(brute_force(ids, vecs, q, 10))) / 10)
        assert np.mean(recalls) >= 0.9

    @pytest.mark.parametrize("n_allowed", [300, 1500])
    def test_approximate_search_respects_allowed_filter(self, clustered: Clustered, n_allowed: int) -> None:
        ids, vecs, queries, index = clustered
        positions = np.random.default_rng(n_allowed).choice(len(ids), n_allowed, replace=False)
        allowed = ids[positions]
        recalls = []
        for q in queries:
            got = hit_ids(index.query(q, 10, allowed))
            assert set(got) <= set(allowed.tolist())
            assert len(got) == 10
            recalls.append(len(set(got) & set(brute_force(allowed, vecs[positions], q, 10))) / 10)
        assert np.mean(recalls) >= 0.9

    def test_a_selective_filter_still_returns_k_results(self, clustered: Clustered) -> None:
        ids, _vecs, queries, index = clustered
        allowed = ids[np.random.default_rng(3).choice(len(ids), 20, replace=False)]
        for q in queries[:20]:
            got = hit_ids(index.query(q, 10, allowed))
            assert set(got) <= set(allowed.tolist())
            assert len(got) == 10

    @pytest.mark.parametrize("exact_search_below", [20_000, 0])
    def test_delete_removes_ids(self, make_vectors: MakeVectors, exact_search_below: int) -> None:
        vecs = normalised(np.random.default_rng(4), 50, 8)
        ids = np.arange(50, dtype=np.int64)
        index = make_vectors(8, exact_search_below=exact_search_below)
        index.upsert(ids, vecs)
        index.query(vecs[0], 5)  # build any lazy structure before deleting
        index.delete(np.array([0, 1, 2, 999], dtype=np.int64))
        assert len(index) == 47
        got = hit_ids(index.query(vecs[0], 50))
        assert not {0, 1, 2} & set(got)
        assert len(got) == 47
        assert hit_ids(index.query(vecs[5], 1)) == [5]
        if exact_search_below:
            assert got == brute_force(ids[3:], vecs[3:], vecs[0], 50)
        index.delete(np.array([], dtype=np.int64))
        assert len(index) == 47

    def test_upsert_existing_id_replaces_vector(self, make_vectors: MakeVectors) -> None:
        index = make_vectors(4)
        eye = np.eye(4, dtype=np.float32)
        index.upsert(np.array([1, 2, 3], dtype=np.int64), eye[:3])
        index.upsert(np.array([1], dtype=np.int64), eye[3:4])  # id 1 now points along axis 3
        assert len(index) == 3
        assert hit_ids(index.query(eye[3], 1)) == [1]
        hits = dict(index.query(eye[1], 3))
        assert hits[1] == pytest.approx(0.0, abs=1e-6)
        assert hits[2] == pytest.approx(1.0, abs=1e-6)
        assert len(index.query(eye[0], 10)) == 3

    def test_dimension_mismatch_raises_storage_error(self, make_vectors: MakeVectors) -> None:
        index = make_vectors(8)
        with pytest.raises(StorageError, match="dimensions"):
            index.upsert(np.array([1], dtype=np.int64), np.zeros((1, 9), dtype=np.float32))
        index.upsert(np.array([1], dtype=np.int64), np.ones((1, 8), dtype=np.float32) / np.sqrt(8))
        with pytest.raises(StorageError):
            index.query(np.zeros(4, dtype=np.float32), 1)
        with pytest.raises(StorageError):
            index.upsert(np.array([2], dtype=np.int64), np.zeros(8, dtype=np.float32))  # 1-d
        assert len(index) == 1
