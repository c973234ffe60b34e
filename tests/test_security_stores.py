"""The security database conformance suite on SQLite (PostgreSQL: tests/test_postgres_security.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.security.service import open_sqlite_security
from groundwork.security.store import SecurityDatabase
from groundwork.testing.security_store import SecurityStoreConformance


class TestSQLiteSecurityDatabase(SecurityStoreConformance):
    @pytest.fixture
    def security_db(self, tmp_path: Path) -> Iterator[SecurityDatabase]:
        db = open_sqlite_security(tmp_path)
        yield db
        db.close()
