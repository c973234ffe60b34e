"""The PostgreSQL + pgvector stores pass the same conformance suites as the embedded ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from groundwork.config import PostgresSettings
from groundwork.stores.postgres import PostgresDocumentStore, PostgresVectorStore, open_stores
from groundwork.stores.protocols import DocumentStore, VectorStore
from groundwork.testing.stores import DIM, DocumentStoreSuite, MakeVectors, VectorStoreSuite

pytestmark = pytest.mark.integration


class TestPostgresDocumentStore(DocumentStoreSuite):
    @pytest.fixture
    def store(self, pg_dsn: str) -> Iterator[DocumentStore]:
        documents, _ = open_stores(PostgresSettings(dsn=pg_dsn, pool_min=1, pool_max=2), DIM)
        yield documents
        documents.close()

    @pytest.fixture
    def reopen(self, pg_dsn: str) -> Iterator[Callable[[DocumentStore], DocumentStore]]:
        opened: list[PostgresDocumentStore] = []

        def again(store: DocumentStore) -> DocumentStore:
            store.close()
            documents, _ = open_stores(PostgresSettings(dsn=pg_dsn, pool_min=1, pool_max=2), DIM)
            opened.append(documents)
            return documents

        yield again
        for s in opened:
            s.close()


class TestPostgresVectorStore(VectorStoreSuite):
    @pytest.fixture(scope="class")
    def make_vectors(self, make_pg_database: Callable[[], str]) -> Iterator[MakeVectors]:
        opened: list[PostgresVectorStore] = []

        def make(dimensions: int, exact_search_below: int = 15_000) -> VectorStore:
            settings = PostgresSettings(dsn=make_pg_database(), pool_min=1, pool_max=2)
            _, vectors = open_stores(settings, dimensions, exact_search_below=exact_search_below)
            opened.append(vectors)
            return vectors

        yield make
        for v in opened:
            v.db.close()
