"""The prompt registry on PostgreSQL: the store conformance suite, immutability, and two replicas."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg
import pytest

from groundwork.config import PostgresSettings
from groundwork.container import Container
from groundwork.errors import ServiceUnavailableError, StorageError
from groundwork.prompts import PromptRegistry, PromptTemplate
from groundwork.prompts.builtin import BUILTIN_PROMPTS, RAG_ANSWER
from groundwork.prompts.postgres_store import PostgresPromptStore, open_prompt_database
from groundwork.prompts.store import PromptStore
from groundwork.testing.prompt_store import TEXT, PromptStoreConformance
from tests.conftest import fake_settings

pytestmark = pytest.mark.integration


def _settings(dsn: str, **values: object) -> PostgresSettings:
    return PostgresSettings(dsn=dsn, pool_min=1, pool_max=4, **values)  # type: ignore[arg-type]


class TestPostgresPromptStore(PromptStoreConformance):
    @pytest.fixture
    def store(self, pg_dsn: str) -> Iterator[PromptStore]:
        s = PostgresPromptStore.open(_settings(pg_dsn))
        yield s
        s.close()


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresPromptStore]:
    s = PostgresPromptStore.open(_settings(pg_dsn))
    yield s
    s.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE gw_prompt_versions SET message = 'rewritten'",
        "DELETE FROM gw_prompt_versions",
        "TRUNCATE gw_prompt_versions CASCADE",
        "UPDATE gw_prompt_label_events SET version = 1",
        "DELETE FROM gw_prompt_label_events",
    ],
)
def test_versions_and_label_history_are_immutable_in_the_database(
    store: PostgresPromptStore, pg_dsn: str, statement: str
) -> None:
    v1 = store.append("greet", TEXT, "ann", "first", 1.0)
    store.append("greet", PromptTemplate(text="Hi {{ name }}"), "ann", "second", 2.0)
    store.set_label("greet", "production", 1, "ann", "", 3.0)
    with psycopg.connect(pg_dsn) as conn, pytest.raises(psycopg.errors.IntegrityError, match="immutable"):
        conn.execute(statement)
    assert store.get("greet", 1) == v1
    assert [e.version for e in store.label_events("greet")] == [1]


def test_the_schema_is_a_recorded_migration_and_needs_no_extension(pg_dsn: str) -> None:
    first = open_prompt_database(_settings(pg_dsn))
    assert first.applied == ["1: schema: prompt names, immutable versions, labels, label history"]
    second = open_prompt_database(_settings(pg_dsn))
    assert second.applied == []  # already there
    first.close()
    second.close()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT subsystem, version FROM groundwork_migrations").fetchall()
        vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert rows == [("prompts", 1)]
    assert vector is None  # prompts alone never create pgvector


def test_without_migrate_on_start_an_empty_database_says_run_groundwork_migrate(pg_dsn: str) -> None:
    with pytest.raises(StorageError, match=r"prompts schema .* at version 0 of 1: run `groundwork migrate`"):
        PostgresPromptStore.open(_settings(pg_dsn, migrate_on_start=False))


def test_an_unreachable_server_is_named_with_the_fix() -> None:
    settings = PostgresSettings(dsn="postgresql://ann:secret@127.0.0.1:1/prompts", connect_timeout_s=1)
    with pytest.raises(
        ServiceUnavailableError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/prompts"
    ) as e:
        PostgresPromptStore.open(settings)
    assert "secret" not in str(e.value)


def test_two_replicas_create_versions_of_one_prompt_concurrently(pg_dsn: str) -> None:
    replicas = [PromptRegistry(PostgresPromptStore.open(_settings(pg_dsn))) for _ in range(2)]
    errors: list[BaseException] = []
    made: list[int] = []
    start = threading.Barrier(8)

    def create(i: int) -> None:
        registry = replicas[i % 2]
        start.wait()
        try:
            for j in range(5):
                version = registry.create("busy", PromptTemplate(text=f"writer {i} text {j}"), f"w{i}")
                made.append(version.version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert sorted(made) == list(range(1, 41))  # distinct and consecutive across both replicas
        for registry in replicas:
            versions = registry.store.versions("busy")
            assert [v.version for v in versions] == list(range(1, 41))
            assert len({v.template.text for v in versions}) == 40
        moved = replicas[0].set_label("busy", "production", 17, "ann", "launch")
        assert replicas[1].get("busy", "production") == replicas[0].get("busy", 17)
        assert replicas[1].labels("busy") == {"production": 17, "latest": 40}
        assert replicas[1].history("busy")[1] == [moved]
        replicas[1].set_label("busy", "production", 30, "bob", "better")
        assert replicas[0].rollback("busy", "production").version == 17
        assert replicas[1].get("busy", "production").version == 17
    finally:
        for registry in replicas:
            registry.close()


def test_concurrent_label_moves_record_each_previous_version(store: PostgresPromptStore, pg_dsn: str) -> None:
    for i in range(3):
        store.append("a", PromptTemplate(text=f"v{i}"), "ann", "", float(i))
    other = PostgresPromptStore.open(_settings(pg_dsn))
    start = threading.Barrier(6)

    def move(i: int) -> None:
        start.wait()
        (store if i % 2 else other).set_label("a", "production", i % 3 + 1, f"w{i}", "", float(i))

    threads = [threading.Thread(target=move, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    events = store.label_events("a", "production")
    assert len(events) == 6
    # a chain: each move's `previous` is the version the move before it set
    assert [e.previous for e in events] == [None, *(e.version for e in events[:-1])]
    assert store.labels("a") == {"production": events[-1].version}


def _pg_container(data_dir: Path, dsn: str, **postgres: object) -> Container:
    return Container(
        fake_settings(data_dir, storage={"backend": "postgres", "postgres": {"dsn": dsn, **postgres}})
    )


def test_the_container_keeps_prompts_in_postgres(tmp_path: Path, pg_dsn: str) -> None:
    first = _pg_container(tmp_path / "a", pg_dsn)
    try:
        assert isinstance(first.prompts.store, PostgresPromptStore)
        assert list(first.prompts.names()) == sorted(s.name for s in BUILTIN_PROMPTS)
        first.prompts.create(RAG_ANSWER, PromptTemplate(text="Answer {{ question }}"), "ann", "short")
    finally:
        first.close()
    # another replica (another data dir) sees the same registry, and does not seed it again
    second = _pg_container(tmp_path / "b", pg_dsn)
    try:
        assert second.prompts.get(RAG_ANSWER).message == "short"
        assert [v.version for v in second.prompts.store.versions(RAG_ANSWER)] == [1, 2]
        assert second.prompts.get(RAG_ANSWER, "production").version == 1
    finally:
        second.close()
    assert not (tmp_path / "a" / "prompts.sqlite3").exists()


def test_groundwork_migrate_applies_the_prompt_schema_too(tmp_path: Path, pg_dsn: str) -> None:
    c = _pg_container(tmp_path, pg_dsn, migrate_on_start=False)
    try:
        lines = c.migrate()
        assert any(line.startswith("applied prompts 1: schema") for line in lines)
        assert c.migrate() == ["the PostgreSQL schema is up to date"]
        assert RAG_ANSWER in c.prompts.names()
    finally:
        c.close()


def test_replicas_starting_together_seed_each_built_in_prompt_once(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_prompt_database(_settings(pg_dsn)).close()  # both replicas find the schema in place
    names = PostgresPromptStore.names

    def slow_names(self: PostgresPromptStore) -> Sequence[str]:
        found = names(self)
        time.sleep(0.3)  # widen the check-then-create window: both replicas would see an empty registry
        return found

    monkeypatch.setattr(PostgresPromptStore, "names", slow_names)
    replicas = [_pg_container(tmp_path / str(i), pg_dsn, pool_max=1) for i in range(2)]
    start = threading.Barrier(2)

    built: list[PromptRegistry] = []

    def warm(c: Container) -> None:
        start.wait()
        # the function behind `Container.prompts`: on Python 3.11 the cached_property's lock is shared by
        # every Container of the process, which would serialise the two replicas here
        built.append(Container.prompts.func(c))

    threads = [threading.Thread(target=warm, args=(c,)) for c in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(built) == 2
        for seed in BUILTIN_PROMPTS:
            assert [v.version for v in built[0].store.versions(seed.name)] == [1]
            assert len(built[1].store.label_events(seed.name)) == len(seed.labels)
    finally:
        for registry in built:
            registry.close()


def test_exclusive_blocks_a_second_holder_until_the_first_leaves(pg_dsn: str) -> None:
    a, b = (PostgresPromptStore.open(_settings(pg_dsn)) for _ in range(2))
    order: list[str] = []
    inside = threading.Event()

    def second() -> None:
        inside.wait()
        with b.exclusive():
            order.append("b")

    t = threading.Thread(target=second)
    t.start()
    with a.exclusive():
        inside.set()
        time.sleep(0.3)
        order.append("a")
    t.join()
    a.close()
    b.close()
    assert order == ["a", "b"]
