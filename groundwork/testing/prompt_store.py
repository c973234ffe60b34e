"""The conformance suite of :class:`~groundwork.prompts.store.PromptStore` backends.

A backend's test module subclasses :class:`PromptStoreConformance` and provides a ``store`` fixture
that yields an empty store::

    class TestSQLitePromptStore(PromptStoreConformance):
        @pytest.fixture
        def store(self, tmp_path):
            s = SQLitePromptStore(tmp_path / "prompts.sqlite3")
            yield s
            s.close()
"""

from __future__ import annotations

import threading

import pytest

from groundwork.errors import NotFoundError
from groundwork.prompts.store import PromptStore
from groundwork.prompts.template import ModelConfig, PromptTemplate, VariableSpec

TEXT = PromptTemplate(text="Hello {{ name }}", variables={"name": VariableSpec(max_length=20)})
CHAT = PromptTemplate(
    kind="chat",
    messages=(("system", "Be brief."), ("user", "{{ question }}")),
    variables={"question": VariableSpec(pattern=r".+\?", rule="non_blank")},
    model=ModelConfig(model_group="local", temperature=0.2, max_tokens=64),
)


class PromptStoreConformance:
    """Behaviour every prompt store must have. Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def store(self) -> PromptStore:
        raise NotImplementedError("a backend's test class provides the `store` fixture")

    def test_versions_are_numbered_per_name_from_one(self, store: PromptStore) -> None:
        a1 = store.append("a", TEXT, "ann", "first", 1.0)
        a2 = store.append("a", CHAT, "bob", "second", 2.0)
        b1 = store.append("b", TEXT, "ann", "", 3.0)
        assert (a1.version, a2.version, b1.version) == (1, 2, 1)
        assert a2.ref == "a@2"

    def test_a_version_round_trips_every_field(self, store: PromptStore) -> None:
        made = store.append("chat", CHAT, "ann", "with model config", 12.5)
        got = store.get("chat", 1)
        assert got == made
        assert got is not None
        assert got.template == CHAT
        assert got.template.model.max_tokens == 64
        assert got.content_hash == CHAT.content_hash
        assert (got.author, got.message, got.created_at) == ("ann", "with model config", 12.5)

    def test_unknown_versions_and_names(self, store: PromptStore) -> None:
        store.append("a", TEXT, "ann", "", 1.0)
        assert store.get("a", 2) is None
        assert store.get("nope", 1) is None
        assert list(store.versions("nope")) == []
        assert store.labels("nope") == {}

    def test_versions_oldest_first_and_names_sorted(self, store: PromptStore) -> None:
        store.append("zeta", TEXT, "ann", "", 1.0)
        store.append("alpha", TEXT, "ann", "", 2.0)
        store.append("alpha", CHAT, "ann", "", 3.0)
        assert [v.version for v in store.versions("alpha")] == [1, 2]
        assert list(store.names()) == ["alpha", "zeta"]

    def test_labels_move_and_record_the_previous_version(self, store: PromptStore) -> None:
        store.append("a", TEXT, "ann", "", 1.0)
        store.append("a", CHAT, "ann", "", 2.0)
        first = store.set_label("a", "production", 1, "ann", "launch", 3.0)
        moved = store.set_label("a", "production", 2, "bob", "better", 4.0)
        store.set_label("a", "staging", 2, "bob", "", 5.0)
        assert first.previous is None
        assert moved.previous == 1
        assert store.labels("a") == {"production": 2, "staging": 2}
        events = store.label_events("a", "production")
        assert [(e.version, e.previous, e.actor, e.reason) for e in events] == [
            (1, None, "ann", "launch"),
            (2, 1, "bob", "better"),
        ]
        assert len(store.label_events("a")) == 3

    def test_a_label_cannot_point_at_a_missing_version(self, store: PromptStore) -> None:
        store.append("a", TEXT, "ann", "", 1.0)
        with pytest.raises(NotFoundError, match="no version 7"):
            store.set_label("a", "production", 7, "ann", "", 2.0)
        assert store.labels("a") == {}
        assert list(store.label_events("a")) == []

    def test_concurrent_appends_get_distinct_numbers(self, store: PromptStore) -> None:
        errors: list[BaseException] = []

        def add(i: int) -> None:
            try:
                store.append("busy", PromptTemplate(text=f"v{i}"), "ann", "", float(i))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert [v.version for v in store.versions("busy")] == list(range(1, 17))
        assert len({v.template.text for v in store.versions("busy")}) == 16
