"""Ingestion rules: incremental, transactional per document, failures isolated."""

from __future__ import annotations

import shutil
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
