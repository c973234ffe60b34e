"""The trace store conformance suite on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from groundwork.config import PostgresSettings
from groundwork.observability.postgres_store import PostgresTraceStore
from groundwork.observability.store import TraceStorage, TraceStore
from groundwork.testing.trace_store import TraceStoreConformance


class TestSQLiteTraceStore(TraceStoreConformance):
    @pytest.fixture
    def trace_store(self, tmp_path: Path) -> Iterator[TraceStorage]:
        store = TraceStore(tmp_path / "traces.sqlite3")
        yield store
        store.close()


@pytest.mark.integration
class TestPostgresTraceStore(TraceStoreConformance):
    @pytest.fixture
    def trace_store(self, pg_dsn: str) -> Iterator[TraceStorage]:
        store = PostgresTraceStore.open(PostgresSettings(dsn=pg_dsn, pool_min=1, pool_max=3))
        yield store
        store.close()


@pytest.mark.integration
def test_the_postgres_trace_schema_is_a_recorded_migration(pg_dsn: str) -> None:
    PostgresTraceStore.open(PostgresSettings(dsn=pg_dsn)).close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT subsystem, version FROM groundwork_migrations").fetchall() == [
            ("traces", 1)
        ]
