"""Prompt templates (strict rendering, schema) and the registry (versions, labels, rollback, diff)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groundwork.errors import InputError, NotFoundError, PromptVariableError
from groundwork.prompts import PromptRegistry, PromptTemplate, Seed, VariableSpec, parse_ref
from groundwork.prompts.builtin import BUILTIN_PROMPTS, RAG_ANSWER
from groundwork.prompts.sqlite_store import SQLitePromptStore
from groundwork.testing.prompt_store import PromptStoreConformance
from groundwork.types import Message


class TestSQLitePromptStore(PromptStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLitePromptStore]:
        s = SQLitePromptStore(tmp_path / "prompts.sqlite3")
        yield s
        s.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[PromptRegistry]:
    ticks = iter(range(1, 10_000))
    r = PromptRegistry(SQLitePromptStore(tmp_path / "prompts.sqlite3"), clock=lambda: float(next(ticks)))
    yield r
    r.close()


# --- templates -------------------------------------------------------------------------------------


def test_variables_are_extracted_in_order_of_first_use() -> None:
    t = PromptTemplate(
        kind="chat", messages=(("system", "You are {{role}}."), ("user", "{{ q }} ({{role}}, {{ lang }})"))
    )
    assert t.variable_names == ("role", "q", "lang")


def test_strict_rendering_names_the_missing_variable() -> None:
    t = PromptTemplate(text="Dear {{ name }}, your code is {{ code }}.")
    with pytest.raises(PromptVariableError, match="missing variable 'code'") as info:
        t.render_text({"name": "Ann"})
    assert (info.value.variable, info.value.rule) == ("code", "required")


def test_strict_rendering_names_an_unexpected_variable() -> None:
    t = PromptTemplate(text="Hi {{ name }}")
    with pytest.raises(PromptVariableError, match="unexpected variable 'nmae'") as info:
        t.render_text({"name": "Ann", "nmae": "typo"})
    assert info.value.rule == "unexpected"


def test_none_is_missing_not_empty() -> None:
    with pytest.raises(PromptVariableError, match="missing variable 'name'"):
        PromptTemplate(text="Hi {{ name }}").render_text({"name": None})


def test_user_values_are_never_template_syntax() -> None:
    t = PromptTemplate(text="Q: {{ question }} / S: {{ secret }}")
    out = t.render_text({"question": "{{ secret }} \\{{ x }}", "secret": "s3"})
    assert out == "Q: {{ secret }} \\{{ x }} / S: s3"


def test_escaped_braces_are_literal_and_a_stray_brace_is_an_error() -> None:
    assert PromptTemplate(text='json: \\{{ "a": {{ v }} }').render_text({"v": "1"}) == 'json: {{ "a": 1 }'
    with pytest.raises(InputError, match="line 2"):
        PromptTemplate(text="ok\nbad {{ 1x }}")


def test_defaults_and_typed_values() -> None:
    t = PromptTemplate(
        text="{{ n }} items, urgent={{ urgent }}, tone={{ tone }}",
        variables={
            "n": VariableSpec(type="integer"),
            "urgent": VariableSpec(type="boolean"),
            "tone": VariableSpec(default="polite"),
        },
    )
    assert t.render_text({"n": 3, "urgent": True}) == "3 items, urgent=true, tone=polite"
    with pytest.raises(PromptVariableError, match="'n' must be integer, got str") as info:
        t.render_text({"n": "3", "urgent": True})
    assert info.value.rule == "type"
    with pytest.raises(PromptVariableError, match="'n' must be integer, got bool"):
        t.render_text({"n": True, "urgent": True})


@pytest.mark.parametrize(
    ("spec", "value", "rule"),
    [
        (VariableSpec(max_length=5), "toolong", "max_length"),
        (VariableSpec(pattern=r"[A-Z]{3}-\d+"), "abc-1", "pattern"),
        (VariableSpec(enum=("en", "fr")), "de", "enum"),
        (VariableSpec(rule="non_blank"), "   ", "non_blank"),
        (VariableSpec(rule="single_line"), "a\nb", "single_line"),
        (VariableSpec(rule="no_template_syntax"), "{{ x }}", "no_template_syntax"),
    ],
)
def test_schema_violations_name_the_variable_and_the_rule(spec: VariableSpec, value: str, rule: str) -> None:
    t = PromptTemplate(text="<{{ field }}>", variables={"field": spec})
    with pytest.raises(PromptVariableError) as info:
        t.render_text({"field": value})
    assert (info.value.variable, info.value.rule) == ("field", rule)
    assert "'field'" in info.value.message and f"rule: {rule}" in info.value.message


def test_valid_values_pass_every_rule() -> None:
    spec = VariableSpec(max_length=8, pattern=r"[A-Z]{3}-\d+", enum=("ABC-1", "XYZ-22"), rule="single_line")
    t = PromptTemplate(text="<{{ f }}>", variables={"f": spec})
    assert t.render_text({"f": "XYZ-22"}) == "<XYZ-22>"


def test_bad_schemas_are_refused_when_the_template_is_made() -> None:
    with pytest.raises(InputError, match="unknown validation rule 'shout'"):
        VariableSpec(rule="shout")
    with pytest.raises(InputError, match="invalid regex"):
        VariableSpec(pattern="(")
    with pytest.raises(InputError, match=r"\['nmae'\] have a schema but the template does not use them"):
        PromptTemplate(text="{{ name }}", variables={"nmae": VariableSpec()})
    with pytest.raises(InputError, match="unknown variable schema keys"):
        PromptTemplate.from_dict({"text": "{{ a }}", "variables": {"a": {"maxlen": 3}}})
    with pytest.raises(InputError, match="temperature"):
        PromptTemplate.from_dict({"text": "x", "model": {"temperature": 7}})


def test_chat_templates_render_messages_and_round_trip() -> None:
    t = PromptTemplate.from_dict(
        {
            "messages": [
                {"role": "system", "content": "Be {{ tone }}."},
                {"role": "user", "content": "{{ q }}"},
            ],
            "variables": {"tone": {"enum": ["brief", "kind"], "default": "brief"}},
            "model": {"model_group": "local", "max_tokens": 32},
        }
    )
    assert t.kind == "chat"
    assert t.render_messages({"q": "Hi?"}) == [Message("system", "Be brief."), Message("user", "Hi?")]
    again = PromptTemplate.from_dict(t.to_dict())
    assert again == t and again.content_hash == t.content_hash
    assert t.model.max_tokens == 32


# --- registry --------------------------------------------------------------------------------------


def test_versions_are_immutable_in_the_database(registry: PromptRegistry) -> None:
    v1 = registry.create("greet", PromptTemplate(text="Hi {{ name }}"), "ann", "first")
    store = registry.store
    assert isinstance(store, SQLitePromptStore)
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        store.db.execute("UPDATE prompt_versions SET message = 'rewritten' WHERE name = 'greet'")
    with pytest.raises(sqlite3.IntegrityError, match="immutable"):
        store.db.execute("DELETE FROM prompt_versions WHERE name = 'greet'")
    assert registry.get("greet", 1) == v1


def test_a_new_text_is_a_new_version_and_the_same_text_is_not(registry: PromptRegistry) -> None:
    v1 = registry.create("greet", PromptTemplate(text="Hi {{ name }}"), "ann", "first")
    same = registry.create("greet", PromptTemplate(text="Hi {{ name }}"), "bob", "again")
    v2 = registry.create("greet", PromptTemplate(text="Hello {{ name }}"), "bob", "warmer")
    assert same == v1
    assert v2.version == 2 and v2.author == "bob" and v2.message == "warmer"
    assert v1.content_hash != v2.content_hash and len(v2.content_hash) == 64
    assert registry.get("greet").version == 2  # latest
    assert registry.get("greet", "1").template.text == "Hi {{ name }}"


def test_labels_move_between_versions(registry: PromptRegistry) -> None:
    for text in ("one", "two", "three"):
        registry.create("p", PromptTemplate(text=text))
    registry.set_label("p", "production", 1)
    registry.set_label("p", "staging", 3)
    assert registry.get("p", "production").version == 1
    registry.set_label("p", "production", "staging")  # to where another label points
    assert registry.get("p", "production").version == 3
    assert registry.labels("p") == {"production": 3, "staging": 3, "latest": 3}
    assert registry.resolve("p@production").ref == "p@3"
    assert registry.resolve("p").ref == "p@3"  # a bare name means production


def test_label_errors_are_clear(registry: PromptRegistry) -> None:
    registry.create("p", PromptTemplate(text="one"))
    with pytest.raises(InputError, match="'latest' always means the newest"):
        registry.set_label("p", "latest", 1)
    with pytest.raises(InputError, match="invalid label"):
        registry.set_label("p", "Prod Label", 1)
    with pytest.raises(NotFoundError, match="has no version 9"):
        registry.set_label("p", "production", 9)
    for huge in (2**63, 10**30, "9" * 40):  # past a 64-bit column: not found, not an OverflowError (a 500)
        with pytest.raises(NotFoundError, match="has no version"):
            registry.get("p", huge)
    with pytest.raises(NotFoundError, match="has no label 'canary'"):
        registry.get("p", "canary")
    with pytest.raises(NotFoundError, match="no prompt named 'q'"):
        registry.get("q")
    with pytest.raises(InputError, match="invalid prompt name"):
        parse_ref("Bad Name@1")


def test_rollback_undoes_moves_one_at_a_time(registry: PromptRegistry) -> None:
    for text in ("one", "two", "three"):
        registry.create("p", PromptTemplate(text=text))
    for v in (1, 2, 3):
        registry.set_label("p", "production", v, actor="ann")
    assert registry.rollback("p", "production", actor="bob").version == 2
    assert registry.rollback("p", "production").version == 1
    with pytest.raises(InputError, match="no earlier version"):
        registry.rollback("p", "production")
    event = registry.rollback("p", "production", to=3)
    assert (event.version, event.previous) == (3, 1)
    _, events = registry.history("p")
    assert [(e.version, e.previous) for e in events] == [(1, None), (2, 1), (3, 2), (2, 3), (1, 2), (3, 1)]
    assert events[3].actor == "bob" and events[3].reason == "rollback"


def test_diff_shows_text_schema_and_model_changes(registry: PromptRegistry) -> None:
    registry.create("p", PromptTemplate(text="Answer {{ q }}\nbriefly."))
    registry.create(
        "p",
        PromptTemplate.from_dict(
            {
                "text": "Answer {{ q }}\nin detail.",
                "variables": {"q": {"max_length": 50}},
                "model": {"max_tokens": 9},
            }
        ),
    )
    diff = registry.diff("p", 1, 2)
    assert diff.startswith("--- p@1\n+++ p@2\n")
    assert "-briefly." in diff and "+in detail." in diff
    assert '"max_length": 50' in diff and '+model: {"max_tokens": 9}' in diff
    assert registry.diff("p", 2, 2) == ""


def test_seed_creates_only_missing_prompts_with_production_label(registry: PromptRegistry) -> None:
    made = registry.seed(BUILTIN_PROMPTS)
    assert [v.ref for v in made] == ["rag.answer@1", "evals.judge@1"]
    assert registry.get(RAG_ANSWER, "production").version == 1
    registry.create(RAG_ANSWER, PromptTemplate(text="{{ sources }} {{ question }}"))
    assert registry.seed([*BUILTIN_PROMPTS, Seed("extra", PromptTemplate(text="x"))])[0].name == "extra"
    assert registry.get(RAG_ANSWER).version == 2
    assert registry.get(RAG_ANSWER, "production").version == 1  # the seed never moves labels again


def test_render_through_the_registry(registry: PromptRegistry) -> None:
    registry.seed(BUILTIN_PROMPTS)
    version, messages = registry.render(RAG_ANSWER, "production", {"sources": "[1] x", "question": "Why?"})
    assert version.ref == "rag.answer@1"
    assert messages[0].role == "system" and messages[1].content == "Sources:\n[1] x\n\nQuestion: Why?"


def test_answers_follow_the_configured_prompt_reference(tmp_path: Path) -> None:
    import asyncio

    from groundwork.container import Container
    from groundwork.rag.answer import SYSTEM_PROMPT, Answerer
    from groundwork.samples import handbook_dir
    from tests.conftest import fake_settings

    question = "How many days of annual leave do full-time staff get?"
    c = Container(fake_settings(tmp_path / "d", prompts={"answer_prompt": "rag.answer@staging"}))
    try:
        c.ingestor.ingest_paths([handbook_dir()])
        with pytest.raises(NotFoundError, match="has no label 'staging'"):
            asyncio.run(c.answerer.ask(question))
        c.prompts.set_label(RAG_ANSWER, "staging", 1)
        assert asyncio.run(c.answerer.ask(question)).prompt == "rag.answer@1"
        bare = Answerer(c.retriever, c.chat_model, c.embedder, c.settings.answer, 0.3)  # no registry
        answer = asyncio.run(bare.ask(question))
        assert answer.prompt == "rag.answer@builtin" and answer.to_dict()["prompt"] == "rag.answer@builtin"
        assert SYSTEM_PROMPT.startswith("You answer questions about a company's documents.")
    finally:
        c.close()


def test_the_registry_is_not_seeded_when_told_not_to(tmp_path: Path) -> None:
    from groundwork.container import Container
    from tests.conftest import fake_settings

    c = Container(fake_settings(tmp_path / "d", prompts={"seed": False}))
    try:
        assert c.prompts.names() == []
    finally:
        c.close()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text": 5}, "must be strings"),
        ({"messages": "hi"}, "`messages` must be a list"),
        ({"messages": [{"role": "user"}]}, "messages need role and content"),
        ({"text": "{{ a }}", "variables": {"a": {"max_length": "x"}}}, "'max_length' must be int"),
        ({"text": "{{ a }}", "variables": {"a": {"max_length": 0}}}, "at least 1"),
        ({"text": "{{ a }}", "variables": {"a": {"required": False}}}, "needs a default"),
        ({"text": "{{ a }}", "variables": {"a": 3}}, "malformed template"),
        ({"text": "x", "kind": "json"}, "unknown template kind"),
    ],
)
def test_malformed_templates_are_input_errors(data: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        PromptTemplate.from_dict(data)


@settings(max_examples=200, deadline=None)
@given(
    a=st.text(), b=st.text(), literal=st.text().filter(lambda t: "{{" not in t and t[-1:] not in ("{", "\\"))
)
def test_rendering_inserts_values_verbatim(a: str, b: str, literal: str) -> None:
    """Whatever the values hold (braces, backslashes, other variables' names), they go in as they are."""
    t = PromptTemplate(text=literal + "{{ a }}|{{ b }}")
    assert t.render_text({"a": a, "b": b}) == f"{literal}{a}|{b}"
