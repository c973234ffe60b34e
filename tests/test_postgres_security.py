"""Keys and the audit log on PostgreSQL: the conformance suite, the recorded migration, the wiring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from groundwork.config import PostgresSettings
from groundwork.container import Container
from groundwork.security.postgres_store import PostgresSecurityDatabase, open_security_database
from groundwork.security.store import SecurityDatabase
from groundwork.testing.security_store import SecurityStoreConformance
from tests.conftest import fake_settings

pytestmark = pytest.mark.integration


def _settings(dsn: str) -> PostgresSettings:
    return PostgresSettings(dsn=dsn, pool_min=1, pool_max=4)


class TestPostgresSecurityDatabase(SecurityStoreConformance):
    @pytest.fixture
    def security_db(self, pg_dsn: str) -> Iterator[SecurityDatabase]:
        db = PostgresSecurityDatabase.open(_settings(pg_dsn))
        yield db
        db.close()


def test_truncating_the_audit_log_is_refused(pg_dsn: str) -> None:
    db = PostgresSecurityDatabase.open(_settings(pg_dsn))
    db.execute("INSERT INTO audit_log (ts, action, actor) VALUES (?, ?, ?)", (1.0, "key.create", "cli:ann"))
    db.close()
    with psycopg.connect(pg_dsn) as conn, pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
        conn.execute("TRUNCATE audit_log")
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


def test_the_schema_is_a_recorded_migration(pg_dsn: str) -> None:
    first = open_security_database(_settings(pg_dsn))
    assert first.applied == ["1: schema: hashed API keys, append-only audit log"]
    second = open_security_database(_settings(pg_dsn))
    assert second.applied == []
    first.close()
    second.close()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT subsystem, version FROM groundwork_migrations").fetchall() == [
            ("security", 1)
        ]


def test_two_containers_on_one_database_share_keys_and_audit(tmp_path: Path, pg_dsn: str) -> None:
    storage = {"backend": "postgres", "postgres": {"dsn": pg_dsn, "pool_max": 4}}
    a = Container(fake_settings(tmp_path / "a", storage=storage))
    b = Container(fake_settings(tmp_path / "b", storage=storage))
    try:
        token, key = a.security.keys.create("shared", "user", ["ops"])
        assert b.security.keys.authenticate(token).prefix == key.prefix
        assert not (tmp_path / "a" / "security.sqlite3").exists()
        b.security.keys.revoke(key.prefix)
        assert a.security.keys.get(key.prefix).status(0) == "revoked"  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


def test_groundwork_migrate_covers_the_security_and_trace_tables(tmp_path: Path, pg_dsn: str) -> None:
    storage = {"backend": "postgres", "postgres": {"dsn": pg_dsn, "pool_max": 4}}
    container = Container(fake_settings(tmp_path, storage=storage))
    try:
        lines = container.migrate()
    finally:
        container.close()
    assert "applied security 1: schema: hashed API keys, append-only audit log" in lines
    assert "applied traces 1: schema: spans and feedback" in lines
