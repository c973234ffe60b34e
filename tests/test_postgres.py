"""Groundwork on PostgreSQL: start-up checks, migrations, and the RAG path through the container."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from groundwork.cli.main import app
from groundwork.config import PostgresSettings
from groundwork.container import Container
from groundwork.errors import ServiceUnavailableError, StorageError
from groundwork.rag.retrieval import Filters
from groundwork.stores.postgres import (
    FilteredIds,
    PostgresDocumentStore,
    PostgresVectorStore,
    open_document_database,
    open_stores,
)
from groundwork.stores.protocols import ChunkFilter
from groundwork.testing.stores import DIM, make_doc
from groundwork.types import Principal
from tests.conftest import fake_settings, require
from tests.pg_fixtures import SYSTEM_PG_WITHOUT_PGVECTOR

pytestmark = pytest.mark.integration


def pg_settings(data_dir: Path, dsn: str, **postgres: object) -> object:
    return fake_settings(data_dir, storage={"backend": "postgres", "postgres": {"dsn": dsn, **postgres}})


@pytest.fixture
def pg_container(tmp_path: Path, pg_dsn: str) -> Iterator[Container]:
    c = Container(pg_settings(tmp_path / "data", pg_dsn))  # type: ignore[arg-type]
    yield c
    c.close()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- start-up checks -------------------------------------------------------------------------------


def test_a_postgres_without_pgvector_fails_at_start_naming_the_fix(tmp_path: Path) -> None:
    require(_reachable("127.0.0.1", 5432), "the system PostgreSQL (no pgvector) is not running on :5432")
    c = Container(pg_settings(tmp_path, SYSTEM_PG_WITHOUT_PGVECTOR))  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailableError) as info:
        c.documents  # noqa: B018
    message = info.value.message
    assert "no pgvector extension" in message and "127.0.0.1:5432/test" in message
    assert "Install pgvector" in message and "storage.backend: embedded" in message
    assert info.value.details["missing"] == "pgvector"


def test_an_unreachable_postgres_fails_at_start_naming_the_server(tmp_path: Path) -> None:
    dsn = f"postgresql://groundwork:s3cret@127.0.0.1:{_free_port()}/gw"
    c = Container(pg_settings(tmp_path, dsn, connect_timeout_s=1))  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailableError) as info:
        c.documents  # noqa: B018
    message = info.value.message
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in message
    assert "GROUNDWORK_STORAGE__POSTGRES__DSN" in message
    assert "s3cret" not in message  # the password never reaches a message


def test_an_old_pgvector_is_refused(pg_dsn: str) -> None:
    from groundwork.stores.postgres.schema import ensure_pgvector

    class OldVector:
        """A connection whose pgvector reports 0.7.4."""

        def __init__(self, conn: psycopg.Connection[object]) -> None:
            self.conn = conn

        def execute(self, query: str, params: object = None) -> object:
            if "FROM pg_extension" in query:
                return self.conn.execute("SELECT '0.7.4'::text")
            return self.conn.execute(query)

        def commit(self) -> None:
            self.conn.commit()

    with psycopg.connect(pg_dsn) as conn, pytest.raises(ServiceUnavailableError, match=r"0\.7\.4 .* too old"):
        ensure_pgvector(OldVector(conn), pg_dsn)  # type: ignore[arg-type]


# -- migrations ------------------------------------------------------------------------------------


def test_migrations_are_recorded_and_applied_once(pg_dsn: str) -> None:
    settings = PostgresSettings(dsn=pg_dsn)
    first = open_document_database(settings, DIM)
    assert [a.split(":")[0] for a in first.applied] == ["1"]
    second = open_document_database(settings, DIM)  # a second replica starting
    assert second.applied == [] and second.pending() == []
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT subsystem, version, name FROM groundwork_migrations").fetchall()
        extension = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert [(r[0], r[1]) for r in rows] == [("documents", 1)]
    assert extension is not None and tuple(int(p) for p in extension[0].split(".")[:2]) >= (0, 8)
    first.close()
    second.close()


def test_without_migrate_on_start_the_message_says_run_groundwork_migrate(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StorageError, match="run `groundwork migrate`"):
        open_document_database(PostgresSettings(dsn=pg_dsn, migrate_on_start=False), DIM)
    config = tmp_path / "groundwork.yaml"
    config.write_text(
        "embeddings: {provider: fake, dimensions: 32}\n"
        f"storage: {{backend: postgres, postgres: {{dsn: '{pg_dsn}', migrate_on_start: false}}}}\n"
    )
    result = CliRunner().invoke(app, ["migrate", "--config", str(config), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "postgres: applied 1: schema" in result.output
    again = CliRunner().invoke(app, ["migrate", "--config", str(config), "--data-dir", str(tmp_path)])
    assert "up to date" in again.output
    documents, _ = open_stores(PostgresSettings(dsn=pg_dsn, migrate_on_start=False), 32)
    assert documents.generation == 0
    documents.close()


def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    open_document_database(PostgresSettings(dsn=pg_dsn), DIM).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO groundwork_migrations VALUES ('documents', 99, 'from the future')")
    with pytest.raises(StorageError, match="version 99, newer than this Groundwork knows"):
        open_document_database(PostgresSettings(dsn=pg_dsn), DIM)


def test_a_different_embedding_size_is_refused(pg_dsn: str) -> None:
    open_stores(PostgresSettings(dsn=pg_dsn), DIM)[0].close()
    with pytest.raises(StorageError, match="holds 32-dimensional vectors but the embedder makes 16"):
        open_stores(PostgresSettings(dsn=pg_dsn), 16)


def test_migrate_on_the_embedded_backend_reports(tmp_path: Path) -> None:
    config = tmp_path / "groundwork.yaml"
    config.write_text("embeddings: {provider: fake}\n")
    result = CliRunner().invoke(app, ["migrate", "--config", str(config), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "embedded:" in result.output
    assert (tmp_path / "groundwork.sqlite3").exists()


# -- two replicas on one database, filters inside the vector query ---------------------------------


def test_a_write_through_one_replica_is_read_through_another(pg_dsn: str) -> None:
    settings = PostgresSettings(dsn=pg_dsn, pool_max=2)
    docs_a, _ = open_stores(settings, DIM)
    docs_b, vectors_b = open_stores(settings, DIM)
    ids = docs_a.write_document(*make_doc("d1", ["Shared ibex notes."], groups=("hr",)))
    assert docs_b.generation == 1
    assert [i for i, _ in docs_b.keyword_search("ibex", 5, ChunkFilter(groups=("hr",)))] == ids.tolist()
    q = make_doc("q", ["Shared ibex notes."])[2][0]
    assert vectors_b.query(q, 1)[0][0] == int(ids[0])
    docs_a.close()
    docs_b.close()


def test_the_filter_travels_with_the_ids_into_the_vector_query(pg_dsn: str) -> None:
    documents, vectors = open_stores(PostgresSettings(dsn=pg_dsn), DIM, exact_search_below=0)
    assert isinstance(documents, PostgresDocumentStore) and isinstance(vectors, PostgresVectorStore)
    rng = np.random.default_rng(0)
    for n in range(30):
        groups = ("hr",) if n % 10 == 0 else ("eng",)
        doc, chunks, _ = make_doc(f"d{n}", [f"text {n} {j}" for j in range(10)], groups=groups)
        vecs = rng.normal(size=(10, DIM)).astype(np.float32)
        documents.write_document(doc, chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    allowed = documents.allowed_chunk_ids(ChunkFilter(groups=("hr",)))
    assert isinstance(allowed, FilteredIds) and allowed.chunk_filter == ChunkFilter(groups=("hr",))
    assert len(allowed) == 30
    assert allowed[:5].chunk_filter is None  # a slice is a plain subset
    hr = set(allowed.tolist())
    statements: list[str] = []
    run = PostgresVectorStore._run

    def recording(conn, statement, q, params, k):  # type: ignore[no-untyped-def]
        statements.append(statement.as_string(conn))
        return run(conn, statement, q, params, k)

    vectors._run = recording  # type: ignore[method-assign]
    for q in documents.iter_vectors()[0][1][:10]:
        hits = vectors.query(q, 10, allowed)  # the HNSW walk with the filter inside (exact_search_below=0)
        assert len(hits) == 10 and {i for i, _ in hits} <= hr
    assert statements and all('"groups" && %s::text[]' in s and "ANY" not in s for s in statements)
    assert all("ORDER BY d LIMIT" in s for s in statements)  # the index-ordered (approximate) path
    vectors.query(q, 10, np.asarray(allowed))  # a plain array: its ids go into the query instead
    assert "c.id = ANY(%s)" in statements[-1]
    documents.close()


# -- the RAG path on PostgreSQL --------------------------------------------------------------------


def test_ingest_retrieve_answer_and_delete_on_postgres(pg_container: Container, handbook: Path) -> None:
    c = pg_container
    report = c.ingestor.ingest_paths([handbook])
    assert not report.failed and report.added
    again = c.ingestor.ingest_paths([handbook])
    assert not again.added and not again.updated  # unchanged documents cost nothing
    r = c.retriever.retrieve("How many days of annual leave do I get?", top_k=3)
    assert r.chunks and "leave" in Path(r.chunks[0].chunk.source).name
    answer = asyncio.run(c.answerer.ask("How many days of annual leave do full-time staff get?"))
    assert answer.citations and "leave" in Path(answer.citations[0].source).name
    doc = c.documents.find_document("default", r.chunks[0].chunk.source)
    assert doc is not None
    assert c.ingestor.delete(doc.id)
    r = c.retriever.retrieve("How many days of annual leave do I get?", top_k=10)
    assert all(sc.chunk.document_id != doc.id for sc in r.chunks)


def test_groups_and_filters_hold_on_postgres(pg_container: Container, handbook: Path) -> None:
    c = pg_container
    c.ingestor.ingest_paths([handbook / "leave-policy.md"], groups=["hr"])
    c.ingestor.ingest_paths([handbook / "beacon-product-faq.md"], groups=["eng"], tags=["faq"])
    eng = Principal(name="e", role="user", groups=("eng",))
    r = c.retriever.retrieve("annual leave days", principal=eng, top_k=10)
    assert r.chunks and {Path(sc.chunk.source).name for sc in r.chunks} == {"beacon-product-faq.md"}
    nobody = Principal(name="n", role="user", groups=("sales",))
    assert c.retriever.retrieve("annual leave days", principal=nobody, top_k=10).chunks == ()
    tagged = c.retriever.retrieve("leave", top_k=10, filters=Filters(tags=("faq",)))
    assert {Path(sc.chunk.source).name for sc in tagged.chunks} == {"beacon-product-faq.md"}


def test_replicas_writing_the_same_document_at_once_take_turns(pg_dsn: str) -> None:
    import threading

    settings = PostgresSettings(dsn=pg_dsn, pool_max=2)
    stores = [open_stores(settings, DIM)[0] for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(n: int) -> None:
        try:
            for round_ in range(5):
                barrier.wait()
                stores[n].write_document(
                    *make_doc("same", [f"Version {n} round {round_}."], version=f"{n}{round_}")
                )
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert stores[0].generation == 10
    doc = stores[1].get_document("same")
    assert doc is not None and doc.chunk_count == 1 and len(stores[1].chunk_ids_of("same")) == 1
    for s in stores:
        s.close()
