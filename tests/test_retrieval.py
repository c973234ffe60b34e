"""Retrieval: filters inside the search, tags, modification dates, MMR diversity."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from groundwork.config import Settings
from groundwork.container import Container
from groundwork.rag.retrieval import Filters, Retriever, mmr
from groundwork.stores.protocols import ChunkFilter
from tests.conftest import fake_settings


def _sources(c: Container, query: str, **kw: object) -> list[str]:
    r = c.retriever.retrieve(query, top_k=kw.pop("top_k", 5), filters=Filters(**kw))  # type: ignore[arg-type]
    return [Path(sc.chunk.source).name for sc in r.chunks]


def test_path_prefix_tags_and_dates_restrict_both_searches(fake_container: Container, handbook: Path) -> None:
    policies = handbook / "policies"
    policies.mkdir()
    for name in ("leave-policy.md", "travel-policy.md"):
        (handbook / name).rename(policies / name)
    old = handbook / "remote-work.md"
    os.utime(old, (1_000_000_000, 1_000_000_000))  # 2001
    ing = fake_container.ingestor
    ing.ingest_paths([handbook])
    ing.ingest_paths([handbook / "beacon-product-faq.md"], tags=["product", "faq"])

    got = _sources(
        fake_container, "annual leave days travel booking", path_prefix=str(policies) + "/", top_k=10
    )
    assert got and set(got) <= {"leave-policy.md", "travel-policy.md"}
    assert set(_sources(fake_container, "free tier tables", tags=("faq",), top_k=10)) == {
        "beacon-product-faq.md"
    }
    assert _sources(fake_container, "free tier tables", tags=("nothing",)) == []
    before_2002 = _sources(
        fake_container, "office days home working", modified_before=1_010_000_000, top_k=10
    )
    assert before_2002 == ["remote-work.md"] * len(before_2002) and before_2002
    after = _sources(fake_container, "office days home working", modified_after=1_010_000_000, top_k=10)
    assert "remote-work.md" not in after and after


def test_a_selective_filter_still_fills_top_k(fake_container: Container, handbook: Path) -> None:
    """Filtering happens inside the search, not after it: top-k is full of admitted chunks."""
    fake_container.ingestor.ingest_paths([handbook])
    doc = fake_container.documents.find_document("default", str(handbook / "information-security-policy.md"))
    assert doc is not None and doc.chunk_count >= 3
    got = _sources(fake_container, "annual leave", path_prefix=doc.source, top_k=3)
    assert got == ["information-security-policy.md"] * 3


def test_tag_changes_are_picked_up_on_reingest(fake_container: Container, handbook: Path) -> None:
    ing = fake_container.ingestor
    path = handbook / "leave-policy.md"
    ing.ingest_paths([path])
    assert ing.ingest_paths([path], tags=["hr"]).updated == [str(path)]
    doc = fake_container.documents.find_document("default", str(path))
    assert doc is not None and doc.tags == ("hr",) and doc.modified_at == path.stat().st_mtime
    assert ing.ingest_paths([path], tags=["hr"]).unchanged == [str(path)]


def test_chunk_filter_emptiness() -> None:
    assert ChunkFilter().is_empty and not ChunkFilter(tags=()).is_empty


def test_mmr_prefers_diverse_results() -> None:
    a = np.asarray([1.0, 0.0], dtype=np.float32)
    near_a = np.asarray([0.99, 0.141], dtype=np.float32)
    b = np.asarray([0.0, 1.0], dtype=np.float32)
    vectors = np.vstack([a, near_a, b])
    relevance = np.asarray([1.0, 0.95, 0.7], dtype=np.float32)
    assert mmr(relevance, vectors, 2, lam=1.0) == [0, 1]  # plain relevance
    assert mmr(relevance, vectors, 2, lam=0.5) == [0, 2]  # the near-duplicate gives way


def test_mmr_in_the_retriever(tmp_path: Path, handbook: Path) -> None:
    plain = Container(fake_settings(tmp_path / "a"))
    diverse = Container(fake_settings(tmp_path / "b", retrieval={"mmr_lambda": 0.3}))
    for c in (plain, diverse):
        c.ingestor.ingest_paths([handbook])
    q = "annual leave sick leave parental leave days"
    docs_plain = set(_sources(plain, q, top_k=4))
    docs_diverse = set(_sources(diverse, q, top_k=4))
    assert len(docs_diverse) >= len(docs_plain)


def test_answers_take_filters(fake_container: Container, handbook: Path) -> None:
    fake_container.ingestor.ingest_paths([handbook])
    answer = asyncio.run(
        fake_container.answerer.ask(
            "How many days of annual leave?", filters=Filters(path_prefix=str(handbook / "remote-work.md"))
        )
    )
    assert all(Path(c.source).name == "remote-work.md" for c in answer.citations)


def test_feedback_query_weights_and_quotes() -> None:
    from groundwork.rag.feedback import Fts5Stemmer, feedback_match, minmax_fusion

    stem = Fts5Stemmer()
    assert stem("running") == stem("runs") == "run"
    match = feedback_match(
        'annual leave "OR" NOT',
        ["Annual leave is 27 days.", "Leave requests go through Harbour."],
        stem.many,
        3,
        0.7,
    )
    assert match is not None
    phrases = match.split(" OR ")
    assert all(p.startswith('"') and p.endswith('"') for p in phrases)  # nothing read as FTS5 syntax
    assert phrases.count('"leave"') > phrases.count('"days"') >= 1  # query words weigh most
    assert feedback_match("the of and", [], stem.many) is None
    fused = minmax_fusion([([(1, 0.9), (2, 0.7), (4, 0.5)], 1.0), ([(2, 10.0), (3, 5.0)], 1.0)])
    assert [i for i, _ in fused] == [2, 1, 3, 4] and fused[0][1] == pytest.approx(1.5)


def test_stemming_many_words_at_once_matches_one_by_one() -> None:
    """``Fts5Stemmer.many`` stems the uncached words in one pass; each must get the stem FTS5 gives it
    alone (the first term of its row), also words FTS5 splits, folds or makes no token of."""
    from groundwork.rag.feedback import Fts5Stemmer

    words = ["running", "runs", "analogy", "as", "café", "x²", "日本語", "a-b", "", "---", "generalizations"]
    alone = []
    for w in words:
        db = sqlite3.connect(":memory:")
        db.execute("CREATE VIRTUAL TABLE s USING fts5(x, tokenize='porter unicode61')")
        db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(s, 'instance')")
        db.execute("INSERT INTO s(rowid, x) VALUES (1, ?)", (w,))
        row = db.execute("SELECT term FROM v LIMIT 1").fetchone()
        alone.append(str(row[0]) if row else w)
    assert alone[:4] == ["run", "run", "analog", "as"] and alone[-3:-1] == ["", "---"]
    stem = Fts5Stemmer()
    assert stem.many(words) == alone
    assert stem.many(words[::-1]) == alone[::-1]  # now from the cache
    full = Fts5Stemmer()
    full.CACHE_SIZE = 2  # a full cache still answers every word
    assert full.many([*words, "ponies"]) == [*alone, "poni"]
    assert [full(w) for w in words] == alone


def test_feedback_never_reads_outside_the_callers_groups(tmp_path: Path, handbook: Path) -> None:
    from groundwork.types import Principal

    c = Container(fake_settings(tmp_path / "d"))
    c.ingestor.ingest_paths([handbook / "leave-policy.md"], groups=["hr"])
    c.ingestor.ingest_paths([handbook / "travel-policy.md", handbook / "remote-work.md"], groups=["all"])
    user = Principal("u", groups=("all",))
    r = c.retriever.retrieve("annual leave days holiday", principal=user, top_k=10)
    assert r.chunks and all(Path(sc.chunk.source).name != "leave-policy.md" for sc in r.chunks)
    hr = c.retriever.retrieve("annual leave days holiday", principal=Principal("h", groups=("hr",)), top_k=10)
    assert {Path(sc.chunk.source).name for sc in hr.chunks} == {"leave-policy.md"}


def test_feedback_is_skipped_on_large_searches(tmp_path: Path, handbook: Path) -> None:
    small = Container(fake_settings(tmp_path / "a", retrieval={"feedback_max_chunks": 10}))
    small.ingestor.ingest_paths([handbook])
    assert "feedback" not in small.retriever.retrieve("annual leave").timings
    big = Container(fake_settings(tmp_path / "b"))
    big.ingestor.ingest_paths([handbook])
    assert "feedback" in big.retriever.retrieve("annual leave").timings


def test_the_only_collection_needs_no_id_filter(fake_container: Container, handbook: Path) -> None:
    docs = fake_container.documents
    fake_container.ingestor.ingest_paths([handbook / "leave-policy.md"])
    assert docs.allowed_chunk_ids(ChunkFilter(collection="default")) is None
    other = docs.allowed_chunk_ids(ChunkFilter(collection="other"))
    assert other is not None and len(other) == 0
    fake_container.ingestor.ingest_paths([handbook / "remote-work.md"], collection="other")
    ids = docs.allowed_chunk_ids(ChunkFilter(collection="default"))
    assert ids is not None and len(ids) == docs.list_documents("default")[0].chunk_count


def test_a_keyword_hit_newer_than_the_vector_index_is_still_served(
    fake_container: Container, handbook: Path
) -> None:
    """The window between a document's SQLite/keyword commit and its vectors (this process or another)."""
    c = fake_container
    c.ingestor.ingest_paths([handbook])
    keyword_first = Retriever(
        c.documents,
        c.vectors,
        c.query_embedder,
        c.settings.retrieval.model_copy(update={"vector_weight": 0.0}),
    )
    query = "annual leave days full-time staff"
    top = keyword_first.retrieve(query, top_k=5).chunks[0].chunk
    c.vectors.delete(c.documents.chunk_ids_of(top.document_id))
    again = keyword_first.retrieve(query, top_k=5).chunks  # feedback reads the top chunks' vectors
    assert again[0].chunk.document_id == top.document_id and again[0].vector_score is None
    with_mmr = Retriever(
        c.documents,
        c.vectors,
        c.query_embedder,
        c.settings.retrieval.model_copy(update={"vector_weight": 0.0, "mmr_lambda": 0.7}),
    )
    diversified = with_mmr.retrieve(query, top_k=3).chunks  # MMR reads the pool's vectors too
    assert top.document_id in {sc.chunk.document_id for sc in diversified}


def test_zscore_fusion_standardises_each_list() -> None:
    from groundwork.rag.feedback import zscore_fusion

    # one list: mean 5/3, std sqrt(8/9): z = (1.414, -0.707, -0.707), shifted so the lowest is 0
    fused = zscore_fusion([([(1, 3.0), (2, 1.0), (3, 1.0)], 1.0)])
    assert [i for i, _ in fused] == [1, 2, 3]
    assert [s for _, s in fused] == pytest.approx([3 / 2**0.5, 0.0, 0.0])
    # a missing id gets nothing from a list; weights scale each list; weight 0 drops one
    fused = dict(zscore_fusion([([(1, 2.0), (2, 0.0)], 1.0), ([(3, 5.0), (1, 1.0)], 0.5)]))
    assert fused == pytest.approx({1: 2.0, 2: 0.0, 3: 1.0})
    assert zscore_fusion([([(1, 2.0)], 0.0), ([], 1.0)]) == []


def test_neighbour_smoothing_lifts_corroborated_chunks_but_not_by_their_own_document() -> None:
    from groundwork.rag.feedback import neighbour_smoothing

    e = np.eye(4, dtype=np.float32)
    twin = e[1] + 0.1 * e[2]
    vectors = np.stack([e[0], e[1], twin / np.linalg.norm(twin), e[3]])
    ranked = [(1, 1.0), (2, 0.9), (3, 0.8), (4, 0.0)]
    # 1 is alone (no similar candidate): 0.5 * 1.0; 2 and 3 vouch for each other: 0.45 + 0.4 = 0.85
    smoothed = neighbour_smoothing(ranked, vectors, neighbours=1, weight=0.5)
    assert [i for i, _ in smoothed] == [2, 3, 1, 4]
    assert [s for _, s in smoothed] == pytest.approx([0.85, 0.85, 0.5, 0.0])
    # the same two chunks from one document: no vote, the order stays
    same_doc = neighbour_smoothing(ranked, vectors, 1, 0.5, documents=["a", "b", "b", "c"])
    assert [i for i, _ in same_doc] == [1, 2, 3, 4]
    assert neighbour_smoothing(ranked, vectors, 0, 0.5) == ranked
    assert neighbour_smoothing(ranked[:1], vectors[:1], 3, 0.5) == ranked[:1]


def test_score_regularisation_in_the_retriever(tmp_path: Path, handbook: Path) -> None:
    plain = Container(fake_settings(tmp_path / "a", retrieval={"smoothing_neighbours": 0}))
    smooth = Container(fake_settings(tmp_path / "b"))
    defaults = smooth.settings.retrieval
    assert defaults.smoothing_neighbours == 3 and defaults.fusion == "zscore"
    for c in (plain, smooth):
        c.ingestor.ingest_paths([handbook])
    q = "annual leave days carried over"
    a = plain.retriever.retrieve(q, top_k=100)
    b = smooth.retriever.retrieve(q, top_k=100)
    assert {sc.chunk.id for sc in a.chunks} == {sc.chunk.id for sc in b.chunks}  # a re-ranking only
    assert [sc.chunk.id for sc in a.chunks] != [sc.chunk.id for sc in b.chunks]
    assert "smoothing" in b.timings and "smoothing" not in a.timings
    scores = [sc.score for sc in b.chunks]
    assert scores == sorted(scores, reverse=True)
    # chunks past the pool (rows 6-8 of the 116 stored) keep their order, below it
    fused = [(i, 10.0 - i) for i in range(1, 9)]
    out, chunks = smooth.retriever._smooth(fused, 5)
    assert sorted(chunks) == [1, 2, 3, 4, 5]
    assert sorted(i for i, _ in out[:5]) == [1, 2, 3, 4, 5] and [i for i, _ in out[5:]] == [6, 7, 8]
    assert max(s for _, s in out[5:]) < min(s for _, s in out[:5])


def test_score_regularisation_survives_a_chunk_deleted_mid_search(
    fake_container: Container, handbook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_container.ingestor.ingest_paths([handbook])
    r = fake_container.retriever
    fused = [(i, 10.0 - i) for i in range(1, 9)]
    out, chunks = r._smooth([(999_999, 11.0), *fused], 5)  # no such chunk: dropped, not a KeyError
    assert 999_999 not in chunks and {i for i, _ in out} == set(range(1, 9))

    def gone(ids: object) -> object:
        raise KeyError(1)

    monkeypatch.setattr(r.vectors, "get_vectors", gone)
    out, _ = r._smooth(fused, 5)
    assert out == fused  # the fused order, unregularised
    r.settings = r.settings.model_copy(update={"feedback_docs": 0})  # feedback reads vectors too
    assert r.retrieve("annual leave", top_k=3).chunks


def test_title_words_weigh_more_by_default(tmp_path: Path) -> None:
    """``retrieval.heading_weight`` (4): in the keyword search a chunk whose title names the query's word
    outranks one whose text only repeats it (Cranfield nDCG@10 0.4554 -> 0.4607, benchmarks/RESULTS.md);
    with weight 1 the repetition wins. (The fused order also depends on the fake embedder's vectors.)"""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "narwhal-migration.md").write_text("# Narwhal migration\n\nRoutes under the sea ice in winter.\n")
    notes = "# Arctic notes\n\nA narwhal, another narwhal and a third narwhal.\n"
    (docs / "arctic-notes.md").write_text(notes)
    for n, topic in enumerate(("walrus colonies", "polar bear dens", "sea ice thickness", "seal pups")):
        (docs / f"other-{n}.md").write_text(f"# {topic.title()}\n\nField notes on {topic} near the coast.\n")
    ranked: dict[str, list[str]] = {}
    for name, retrieval in (("default", {}), ("weight 1", {"heading_weight": 1})):
        c = Container(fake_settings(tmp_path / name, retrieval=retrieval))
        c.ingestor.ingest_paths([docs])
        hits = c.documents.keyword_search("narwhal", 10, ChunkFilter())
        chunks = c.documents.get_chunks([i for i, _ in hits])
        ranked[name] = [Path(chunks[i].source).name for i, _ in hits]
        c.close()
    assert Settings().retrieval.heading_weight == 4
    assert ranked["default"] == ["narwhal-migration.md", "arctic-notes.md"]
    assert ranked["weight 1"] == ["arctic-notes.md", "narwhal-migration.md"]
