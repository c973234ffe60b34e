"""The tantivy keyword index behind SQLiteDocumentStore.keyword_search: filters, and staying in step
with SQLite across crashes, corruption and reopening."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from groundwork.stores.keyword_index import TantivyKeywordIndex, weighted_words
from groundwork.stores.protocols import ChunkFilter
from groundwork.stores.sqlite import SQLiteDocumentStore
from tests.test_stores import make_doc


def ids(hits: list[tuple[int, float]]) -> list[int]:
    return [i for i, _ in hits]


def put(store: SQLiteDocumentStore, doc_id: str, text: str, **fields: object) -> int:
    doc, chunks, vecs = make_doc(doc_id, [text], source=str(fields.pop("source", f"{doc_id}.md")))
    doc = dataclasses.replace(doc, **fields)  # type: ignore[arg-type]
    return int(store.write_document(doc, chunks, vecs)[0])


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SQLiteDocumentStore(tmp_path / "gw.sqlite3")
    yield s
    s.close()


def test_weighted_words_counts_repeated_phrases() -> None:
    assert weighted_words('"a" OR "b" OR "a"') == {"a": 2, "b": 1}
    assert weighted_words("no quotes") == {}


def test_source_prefix_is_literal_not_a_pattern(store: SQLiteDocumentStore) -> None:
    special = put(store, "s1", "gazebo plans", source="docs/a+b (1)/plan.md")
    other = put(store, "s2", "gazebo plans", source="docs/aab (1)/plan.md")
    dotted = put(store, "s3", "gazebo plans", source="docs/x.y/plan.md")
    put(store, "s4", "gazebo plans", source="docs/xzy/plan.md")
    assert ids(store.keyword_search("gazebo", 10, ChunkFilter(source_prefix="docs/a+b (1)/"))) == [special]
    assert ids(store.keyword_search("gazebo", 10, ChunkFilter(source_prefix="docs/aab"))) == [other]
    assert ids(store.keyword_search("gazebo", 10, ChunkFilter(source_prefix="docs/x.y"))) == [dotted]
    assert len(store.keyword_search("gazebo", 10, ChunkFilter(source_prefix="docs/"))) == 4


def test_tags_and_modification_time_filter_inside_the_search(store: SQLiteDocumentStore) -> None:
    old = put(store, "old", "trebuchet manual", tags=("legacy",), modified_at=1000.0)
    new = put(store, "new", "trebuchet manual", tags=("current", "x"), modified_at=2000.0)
    assert ids(store.keyword_search("trebuchet", 10, ChunkFilter(tags=("current",)))) == [new]
    assert sorted(ids(store.keyword_search("trebuchet", 10, ChunkFilter(tags=("legacy", "x"))))) == sorted(
        [old, new]
    )
    assert store.keyword_search("trebuchet", 10, ChunkFilter(tags=())) == []
    assert ids(store.keyword_search("trebuchet", 10, ChunkFilter(modified_after=1500.0))) == [new]
    assert ids(store.keyword_search("trebuchet", 10, ChunkFilter(modified_before=2000.0))) == [old]
    inclusive = ids(store.keyword_search("trebuchet", 10, ChunkFilter(modified_after=1000.0)))
    assert sorted(inclusive) == sorted([old, new])


def test_a_filter_fills_the_top_k_before_ranking(store: SQLiteDocumentStore) -> None:
    for i in range(30):
        put(store, f"a{i}", "ocelot ocelot ocelot ocelot", groups=("a",))
    wanted = put(store, "b", "one ocelot among many words in a longer sentence", groups=("b",))
    assert ids(store.keyword_search("ocelot", 1, ChunkFilter(groups=("b",)))) == [wanted]
    assert store.keyword_search("ocelot", 5, ChunkFilter(groups=("c",))) == []


def test_an_index_behind_the_store_is_rebuilt_on_open(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteDocumentStore(path)
    first = put(store, "d1", "albatross migration")
    store.close()
    # as if the process died after SQLite committed a second document but before the index did
    store = SQLiteDocumentStore(path)
    second = put(store, "d2", "albatross nesting")
    (store.keywords.directory / "generation").write_text(f"1 {store.generation - 1}\n")
    store.keywords._writer = None  # the pending index write is lost with the process
    store._db.close()
    store = SQLiteDocumentStore(path)
    assert sorted(ids(store.keyword_search("albatross", 10, ChunkFilter()))) == sorted([first, second])
    assert store.keywords.generation == store.generation
    store.close()


def test_a_corrupt_index_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteDocumentStore(path)
    chunk = put(store, "d1", "pangolin scales")
    directory = store.keywords.directory
    store.close()
    (directory / "meta.json").write_text("{ not json")
    store = SQLiteDocumentStore(path)
    assert ids(store.keyword_search("pangolin", 10, ChunkFilter())) == [chunk]
    store.close()


def test_reopening_an_index_in_step_does_not_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteDocumentStore(path)
    chunk = put(store, "d1", "capybara pools")
    store.close()

    def fail(*_: object) -> int:
        raise AssertionError("rebuilt an index that was in step")

    monkeypatch.setattr(TantivyKeywordIndex, "rebuild", fail)
    store = SQLiteDocumentStore(path)
    assert ids(store.keyword_search("capybara", 10, ChunkFilter())) == [chunk]
    store.close()


def test_deleted_and_replaced_documents_leave_the_index(store: SQLiteDocumentStore) -> None:
    put(store, "d1", "quetzal feathers")
    store.delete_document("d1")
    assert store.keyword_search("quetzal", 10, ChunkFilter()) == []
    put(store, "d2", "okapi stripes")
    replaced = put(store, "d2", "okapi spots")
    assert ids(store.keyword_search("okapi", 10, ChunkFilter())) == [replaced]
    assert store.keyword_search("stripes", 10, ChunkFilter()) == []


def test_a_very_long_source_prefix_is_a_plain_filter(store: SQLiteDocumentStore) -> None:
    # found by the API fuzzer: a prefix compiled to a regex overflowed tantivy's automaton limit
    deep = "a/" * 400 + "x.md"
    chunk = put(store, "deep", "wombat burrows", source=deep)
    put(store, "flat", "wombat burrows", source="b.md")
    assert ids(store.keyword_search("wombat", 10, ChunkFilter(source_prefix=deep[:-4]))) == [chunk]
    assert store.keyword_search("wombat", 10, ChunkFilter(source_prefix="z" * 5000)) == []


def test_another_process_can_open_the_store_right_after_an_ingestion(tmp_path: Path) -> None:
    """The ingestor commits the keyword index when it ends, releasing its writer: a second store on the
    same files (a CLI beside a server) opens and searches without a rebuild and without a lock error."""
    from groundwork.config import ChunkingSettings
    from groundwork.models.fake import FakeEmbedder
    from groundwork.rag.ingest import Ingestor
    from groundwork.stores.faiss_index import FaissVectorStore

    path = tmp_path / "gw.sqlite3"
    server = SQLiteDocumentStore(path)
    emb = FakeEmbedder(32)
    ingestor = Ingestor(server, FaissVectorStore(32), emb, ChunkingSettings())
    (tmp_path / "doc.md").write_text("# Kiosk\n\nThe lobby kiosk prints visitor badges.\n")
    ingestor.ingest_paths([tmp_path / "doc.md"])
    assert server.keywords._writer is None  # committed, writer released
    cli = SQLiteDocumentStore(path)
    assert cli.keywords.generation == cli.generation
    assert len(cli.keyword_search("kiosk badges", 5, ChunkFilter())) == 1
    cli.close()
    server.close()


def test_heading_weight_counts_title_words_more_and_a_new_weight_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "gw.sqlite3"
    store = SQLiteDocumentStore(path, heading_weight=1)
    written = {}
    for doc_id, title, text in (
        ("titled", "Narwhal migration", "routes under the sea ice in winter and spring"),
        ("mentions", "Arctic notes", "a narwhal, another narwhal and a third narwhal near the ice"),
    ):
        doc, chunks, vecs = make_doc(doc_id, [text], title=title)
        written[doc_id] = int(store.write_document(doc, chunks, vecs)[0])
    assert ids(store.keyword_search("narwhal", 10, ChunkFilter())) == [written["mentions"], written["titled"]]
    store.close()
    # the same files opened with another weight: rebuilt, not read with the old weight
    store = SQLiteDocumentStore(path, heading_weight=4)
    assert ids(store.keyword_search("narwhal", 10, ChunkFilter())) == [written["titled"], written["mentions"]]
    assert store.keywords.generation == store.generation
    store.close()
    store = SQLiteDocumentStore(path, heading_weight=0)  # headings not indexed at all
    assert ids(store.keyword_search("narwhal", 10, ChunkFilter())) == [written["mentions"]]
    store.close()
