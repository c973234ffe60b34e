"""Ingestion rules: incremental, transactional per document, failures isolated."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from groundwork.container import Container
from groundwork.errors import InputError
from groundwork.models.fake import FakeEmbedder
from groundwork.samples import broken_dir
from groundwork.stores.faiss_index import FaissVectorStore
from tests.conftest import fake_settings

N_HANDBOOK = 20


def test_ingest_handbook_then_reingest_embeds_nothing(fake_container: Container, handbook: Path) -> None:
    first = fake_container.ingestor.ingest_paths([handbook])
    assert len(first.added) == N_HANDBOOK and not first.failed
    assert first.chunks_embedded == first.chunks_written > N_HANDBOOK
    assert len(fake_container.vectors) == first.chunks_written
    embedder = fake_container.embedder
    assert isinstance(embedder, FakeEmbedder)
    calls = embedder.texts_embedded

    second = fake_container.ingestor.ingest_paths([handbook])
    assert second.chunks_embedded == 0 and embedder.texts_embedded == calls
    assert len(second.unchanged) == N_HANDBOOK and not (second.added or second.updated or second.deleted)


def test_changed_file_is_replaced_and_deleted_file_disappears(
    fake_container: Container, handbook: Path
) -> None:
    ing = fake_container.ingestor
    ing.ingest_paths([handbook])
    leave = handbook / "leave-policy.md"
    leave.write_text(leave.read_text().replace("27 days", "31 days"))
    (handbook / "travel-policy.md").unlink()

    report = ing.ingest_paths([handbook])
    assert [Path(s).name for s in report.updated] == ["leave-policy.md"]
    assert [Path(s).name for s in report.deleted] == ["travel-policy.md"]
    assert report.chunks_embedded == fake_container.documents.find_document("default", str(leave)).chunk_count

    sources = {Path(d.source).name for d in fake_container.documents.list_documents("default")}
    assert "travel-policy.md" not in sources and len(sources) == N_HANDBOOK - 1
    hits = fake_container.retriever.retrieve("flights booked before departure travel policy", top_k=10)
    assert all(Path(sc.chunk.source).name != "travel-policy.md" for sc in hits.chunks)
    texts = [sc.chunk.text for sc in fake_container.retriever.retrieve("annual leave days", top_k=10).chunks]
    assert any("31 days" in t for t in texts) and not any("27 days of annual" in t for t in texts)
    # the vector index holds exactly the live chunks
    live = sum(d.chunk_count for d in fake_container.documents.list_documents())
    assert len(fake_container.vectors) == live


def test_corrupt_and_unsupported_files_are_reported_and_the_rest_lands(
    fake_container: Container, handbook: Path
) -> None:
    for f in broken_dir().iterdir():
        shutil.copy(f, handbook / f.name)
    report = fake_container.ingestor.ingest_paths([handbook])
    failed = {Path(s).name: reason for s, reason in report.failed}
    assert set(failed) == {"corrupt.pdf", "notes.xyz"}
    assert "not a readable PDF" in failed["corrupt.pdf"]
    assert "unsupported file type '.xyz'" in failed["notes.xyz"]
    assert len(report.added) == N_HANDBOOK


def test_exception_mid_document_leaves_no_partial_document(fake_container: Container, handbook: Path) -> None:
    """An embedder that dies on one document's text: that one is absent, the others complete.

    Documents share embedding batches; when a batch fails each document is retried alone, so the
    failure stays with the document that caused it.
    """
    embedder = fake_container.embedder
    real_embed = embedder.embed
    calls = {"n": 0}

    sizes: list[int] = []

    def flaky(texts):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        sizes.append(len(texts))
        if any("Ledgerly" in t for t in texts):  # the expenses policy breaks the embedder
            raise RuntimeError("simulated crash while embedding")
        return real_embed(texts)

    embedder.embed = flaky  # type: ignore[method-assign]
    report = fake_container.ingestor.ingest_paths([handbook])
    assert len(report.failed) == 1 and "simulated crash" in report.failed[0][1]
    failed_source = report.failed[0][0]
    assert Path(failed_source).name == "expenses-and-reimbursement.md"
    assert fake_container.documents.find_document("default", failed_source) is None
    assert len(report.added) == N_HANDBOOK - 1
    biggest_document = max(d.chunk_count for d in fake_container.documents.list_documents())
    assert max(sizes) > biggest_document  # documents shared an embedding call
    # the next run picks the failed file up
    embedder.embed = real_embed  # type: ignore[method-assign]
    again = fake_container.ingestor.ingest_paths([handbook])
    assert again.added == [failed_source] and len(again.unchanged) == N_HANDBOOK - 1


def test_crash_inside_the_transaction_keeps_the_previous_version(tmp_path: Path, handbook: Path) -> None:
    c = Container(fake_settings(tmp_path / "data"))
    c.ingestor.ingest_paths([handbook])
    doc_path = handbook / "remote-work.md"
    before = c.documents.find_document("default", str(doc_path))
    assert before is not None
    before_chunks = c.documents.chunk_ids_of(before.id)
    generation = c.documents.generation

    real_write = c.documents.write_document

    def crashing_write(document, chunks, vectors, before_commit=None):  # type: ignore[no-untyped-def]
        def boom() -> None:
            raise KeyboardInterrupt("power cut after the chunks were inserted")

        return real_write(document, chunks, vectors, before_commit=boom)

    c.documents.write_document = crashing_write  # type: ignore[method-assign]
    doc_path.write_text(
        doc_path.read_text() + "\n\n## New section\n\nA brand new paragraph about bicycles.\n"
    )
    with pytest.raises(KeyboardInterrupt):
        c.ingestor.ingest_paths([doc_path])
    after = c.documents.find_document("default", str(doc_path))
    assert after == before
    assert np.array_equal(c.documents.chunk_ids_of(before.id), before_chunks)
    assert c.documents.generation == generation
    c.close()

    # a new process sees the old version, and the vector index matches the database
    c2 = Container(fake_settings(tmp_path / "data"))
    assert c2.documents.find_document("default", str(doc_path)) == before
    assert len(c2.vectors) == sum(d.chunk_count for d in c2.documents.list_documents())
    c2.close()


def test_vector_index_is_rebuilt_when_it_lags_the_database(tmp_path: Path, handbook: Path) -> None:
    c = Container(fake_settings(tmp_path / "data"))
    c.ingestor.ingest_paths([handbook])
    saved_meta = (tmp_path / "data" / "index" / "vectors.meta.json").read_text()
    c.ingestor.delete(c.documents.list_documents()[0].id)  # saves a newer index
    c.close()
    # simulate a crash after the SQLite commit but before the index was saved: restore the old meta
    (tmp_path / "data" / "index" / "vectors.meta.json").write_text(saved_meta)
    c2 = Container(fake_settings(tmp_path / "data"))
    store = FaissVectorStore(c2.embedder.dimensions)
    assert store.load_or_rebuild(tmp_path / "data" / "index", c2.documents) is True
    assert len(c2.vectors) == sum(d.chunk_count for d in c2.documents.list_documents())
    c2.close()


def test_collections_are_separate_and_groups_change_triggers_rewrite(
    fake_container: Container, handbook: Path
) -> None:
    ing = fake_container.ingestor
    ing.ingest_paths([handbook / "leave-policy.md"], collection="hr", groups=["hr"])
    ing.ingest_paths([handbook / "beacon-product-faq.md"], collection="product")
    assert fake_container.documents.collections() == {"hr": 1, "product": 1}
    hr_hits = fake_container.retriever.retrieve("Beacon free tier tables", collection="hr")
    assert all(sc.chunk.collection == "hr" for sc in hr_hits.chunks)
    again = ing.ingest_paths([handbook / "leave-policy.md"], collection="hr", groups=["hr", "managers"])
    assert len(again.updated) == 1
    doc = fake_container.documents.list_documents("hr")[0]
    assert doc.groups == ("hr", "managers")


def test_missing_path_is_a_clear_input_error(fake_container: Container, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        fake_container.ingestor.ingest_paths([tmp_path / "nope"])


def test_upload_bytes(fake_container: Container) -> None:
    report = fake_container.ingestor.ingest_bytes(
        b"# Snacks\n\nThe kitchen restocks on Tuesdays.\n", "snacks.md"
    )
    assert report.added == ["snacks.md"]
    hits = fake_container.retriever.retrieve("when is the kitchen restocked")
    assert hits.chunks and hits.chunks[0].chunk.title == "Snacks"


def test_embedding_overlaps_the_writes_of_the_previous_batch(
    fake_container: Container, handbook: Path
) -> None:
    """Batch N is written while batch N+1 embeds: the first write waits until the second embedding call
    has started, which only a pipelined ingestion lets happen (a serial one would time out here)."""
    import threading

    embedder, documents = fake_container.embedder, fake_container.documents
    real_embed, real_write = embedder.embed, documents.write_document
    second_call = threading.Event()
    calls: list[tuple[str, int]] = []
    waited: list[bool] = []

    def embed(texts):  # type: ignore[no-untyped-def]
        calls.append((threading.current_thread().name, len(texts)))
        if len(calls) == 2:
            second_call.set()
        return real_embed(texts)

    def write(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not waited:
            waited.append(second_call.wait(timeout=10))
        return real_write(*args, **kwargs)

    embedder.embed = embed  # type: ignore[method-assign]
    documents.write_document = write  # type: ignore[method-assign]
    report = fake_container.ingestor.ingest_paths([handbook])
    assert len(report.added) == N_HANDBOOK and not report.failed
    assert waited == [True]
    assert all(name.startswith("ingest-embed") for name, _ in calls)
    # the first call is small (the embedder starts early)
    biggest = max(d.chunk_count for d in documents.list_documents())
    assert 64 <= calls[0][1] < 64 + biggest and len(calls) >= 2
    assert sum(n for _, n in calls) == report.chunks_written


@pytest.mark.parametrize(("seconds_per_call", "cap"), [(0.0, 70), (0.5, 70), (None, 100_000)])
def test_embedding_calls_take_what_was_collected_meanwhile(
    tmp_path: Path, handbook: Path, seconds_per_call: float | None, cap: int
) -> None:
    """A call starts once the embedder is free and 64 chunks wait, with everything collected since the
    last call, up to ``embed_batch`` (then collecting waits): a slow embedder gets full calls.

    ``seconds_per_call`` ``None``: the first call lasts until every file has been collected (however
    slow parsing is on a loaded machine), so the second call must take all the rest."""
    import time

    from groundwork.rag.ingest import MIN_EMBED_CALL, Ingestor

    c = Container(fake_settings(tmp_path / "data"))
    sizes: list[int] = []  # chunks per call (the copies' identical texts are embedded once in a call)
    ingestor = Ingestor(c.documents, c.vectors, c.embedder, c.settings.chunking, embed_batch=cap)
    real_embed = ingestor._embed_batch
    all_collected = threading.Event()

    def progress(path: str, done: int, total: int) -> None:
        if done == total:
            all_collected.set()

    def embed(batch):  # type: ignore[no-untyped-def]
        sizes.append(sum(len(p.chunks) for p in batch))
        if seconds_per_call is not None:
            time.sleep(seconds_per_call)
        elif len(sizes) == 1:
            assert all_collected.wait(timeout=60)
        return real_embed(batch)

    ingestor._embed_batch = embed  # type: ignore[method-assign]
    for n in range(6):  # more files: six copies of the handbook
        shutil.copytree(handbook, tmp_path / f"copy{n}")
    report = ingestor.ingest_paths([tmp_path / f"copy{n}" for n in range(6)], progress=progress)
    stored = c.documents.list_documents()
    c.close()
    biggest = max(d.chunk_count for d in stored)
    assert sum(sizes) == report.chunks_written and len(report.added) == 6 * N_HANDBOOK
    assert all(n < cap + biggest for n in sizes)  # the cap: a document is not split across calls
    assert MIN_EMBED_CALL <= sizes[0] < MIN_EMBED_CALL + biggest
    assert all(n >= MIN_EMBED_CALL for n in sizes[:-1])
    if seconds_per_call and cap == 70:  # parsing outpaces the embedder: the calls between are full
        assert len(sizes) >= 3 and all(n >= 70 for n in sizes[1:-1])
    if cap > report.chunks_written:  # everything parsed during the first call goes in the second
        assert report.chunks_written > 3 * MIN_EMBED_CALL and len(sizes) == 2


def test_a_text_repeated_in_a_batch_is_embedded_once(fake_container: Container, tmp_path: Path) -> None:
    folder = tmp_path / "dup"
    folder.mkdir()
    boilerplate = "Confidential: do not forward this page outside the company."
    for name in ("a", "b"):
        (folder / f"{name}.md").write_text(
            f"# Notice\n\nPage {name} about leave.\n\n## Footer\n\n{boilerplate}\n"
        )
    embedder = fake_container.embedder
    assert isinstance(embedder, FakeEmbedder)
    report = fake_container.ingestor.ingest_paths([folder])
    assert report.chunks_written == 4 and not report.failed
    assert embedder.texts_embedded == 3  # the identical footer chunk (same title and headings) once
    hits = fake_container.retriever.retrieve(boilerplate, top_k=4).chunks
    footers = [sc for sc in hits if sc.chunk.text == boilerplate]
    assert len(footers) == 2
    assert len({sc.chunk.document_id for sc in footers}) == 2
    assert footers[0].vector_score == pytest.approx(footers[1].vector_score)  # the same vector
