"""The response cache: scoping, exact and semantic hits, the false-hit guard, streams, Cache-Control."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from groundwork.cache import CachedEmbedder, CachedModel, ResponseCache, cache_policy
from groundwork.cache.context import parse_cache_control
from groundwork.cache.guard import entities, guard_reason, negations, numbers
from groundwork.cache.keys import chat_keys, permission_scope
from groundwork.cache.sqlite import SQLiteCacheStore
from groundwork.config import CacheSettings
from groundwork.errors import StorageError
from groundwork.models.fake import FakeChatModel, FakeEmbedder
from groundwork.types import GenerationOptions, Message, Principal, StreamChunk

ALICE = Principal("alice", "user", ("hr",))
BOB = Principal("bob", "user", ("eng",))
CAROL = Principal("carol", "user", ("hr",))
ADMIN = Principal("root", "admin")


class Events:
    def __init__(self) -> None:
        self.lookups: list[tuple[str, str]] = []
        self.trips: list[str] = []
        self.errors: list[str] = []

    def cache_lookup(self, kind: str, result: str) -> None:
        self.lookups.append((kind, result))

    def cache_guard_trip(self, reason: str) -> None:
        self.trips.append(reason)

    def cache_error(self, operation: str) -> None:
        self.errors.append(operation)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def cache(tmp_path: Path, events: Events) -> Iterator[ResponseCache]:
    settings = CacheSettings(semantic_threshold=0.8, max_entries=100)
    c = ResponseCache(
        SQLiteCacheStore(tmp_path / "cache.sqlite3", 100), settings, CachedEmbedder(FakeEmbedder(64)), events
    )
    yield c
    c.close()


def ask(
    model: CachedModel, text: str, principal: Principal = ADMIN, cc: str | None = None
) -> tuple[str, str]:
    async def run() -> tuple[str, str]:
        with cache_policy(principal, cc) as outcome:
            completion = await model.generate([Message("user", text)], GenerationOptions(max_tokens=50))
        return completion.text, outcome.status

    return asyncio.run(run())


def test_exact_hit_does_not_call_the_model(cache: ResponseCache) -> None:
    inner = FakeChatModel(responder=lambda m: "answer one")
    model = CachedModel(inner, cache)
    assert ask(model, "What is the leave policy?") == ("answer one", "miss")
    assert ask(model, "What is the leave policy?") == ("answer one", "hit")
    assert len(inner.calls) == 1


def test_principals_with_different_groups_never_share_an_entry(cache: ResponseCache) -> None:
    inner = FakeChatModel()
    inner.enqueue("for hr", "for eng", "for admin")
    model = CachedModel(inner, cache)
    q = "What is the salary band for level 3?"
    assert ask(model, q, ALICE) == ("for hr", "miss")
    assert ask(model, q, BOB) == ("for eng", "miss")
    assert ask(model, q, ADMIN) == ("for admin", "miss")
    assert ask(model, q, CAROL) == ("for hr", "hit")  # same role and groups: the same documents
    assert ask(model, q, BOB) == ("for eng", "hit")
    assert len(inner.calls) == 3


def test_scope_distinguishes_admin_role_and_groups() -> None:
    scopes = {
        permission_scope(p)
        for p in [ADMIN, ALICE, BOB, Principal("x", "builder", ("hr",)), Principal("y", "user", ())]
    }
    assert len(scopes) == 5
    assert permission_scope(Principal("z", "user", ("b", "a", "a"))) == permission_scope(
        Principal("w", "user", ("a", "b"))
    )


def test_key_covers_group_options_prompt_version_and_scope() -> None:
    msgs = [Message("user", "hi")]
    base = chat_keys("g", msgs, GenerationOptions(), "admin", None)
    variants = [
        chat_keys("other", msgs, GenerationOptions(), "admin", None),
        chat_keys("g", msgs, GenerationOptions(max_tokens=7), "admin", None),
        chat_keys("g", msgs, GenerationOptions(temperature=0.5), "admin", None),
        chat_keys("g", msgs, GenerationOptions(stop=("x",)), "admin", None),
        chat_keys("g", msgs, GenerationOptions(), "user:hr", None),
        chat_keys("g", msgs, GenerationOptions(), "admin", "answer@2"),
        chat_keys("g", [Message("system", "be brief"), *msgs], GenerationOptions(), "admin", None),
    ]
    assert len({k for k, _ in [base, *variants]}) == len(variants) + 1
    assert len({b for _, b in [base, *variants]}) == len(variants) + 1
    # the bucket ignores the query itself, so paraphrases meet there
    assert chat_keys("g", [Message("user", "hello")], None, "admin")[1] == base[1]


def test_semantic_hit_on_a_paraphrase(cache: ResponseCache, events: Events) -> None:
    inner = FakeChatModel(responder=lambda m: "25 days")
    model = CachedModel(inner, cache)
    ask(model, "How many vacation days do employees get per year?")
    text, status = ask(model, "Per year, how many vacation days do employees get?")
    assert (text, status) == ("25 days", "hit")
    assert ("chat", "semantic") in events.lookups
    assert len(inner.calls) == 1


def test_negated_paraphrase_does_not_hit(cache: ResponseCache, events: Events) -> None:
    inner = FakeChatModel()
    inner.enqueue("Yes, it is reimbursed.", "No, it is not reimbursed.")
    model = CachedModel(inner, cache)
    ask(model, "Is business class travel reimbursed for long flights?")
    text, status = ask(model, "Is business class travel not reimbursed for long flights?")
    assert (text, status) == ("No, it is not reimbursed.", "miss")
    assert events.trips == ["negation"]


def test_different_number_or_entity_does_not_hit(cache: ResponseCache, events: Events) -> None:
    inner = FakeChatModel(responder=lambda m: m[-1].content.upper())
    model = CachedModel(inner, cache)
    ask(model, "What was the travel budget in 2024 for the Berlin office?")
    assert ask(model, "What was the travel budget in 2025 for the Berlin office?")[1] == "miss"
    assert ask(model, "What was the travel budget in 2024 for the Paris office?")[1] == "miss"
    assert set(events.trips) == {"number", "entity"}


def test_semantic_respects_scope(cache: ResponseCache) -> None:
    inner = FakeChatModel(responder=lambda m: "x")
    model = CachedModel(inner, cache)
    ask(model, "How many vacation days do employees get per year?", ALICE)
    assert ask(model, "Per year, how many vacation days do employees get?", BOB)[1] == "miss"


def test_no_cache_recomputes_and_no_store_keeps_nothing(cache: ResponseCache) -> None:
    inner = FakeChatModel()
    inner.enqueue("first", "second", "third")
    model = CachedModel(inner, cache)
    assert ask(model, "q?", cc="no-store") == ("first", "bypass")
    assert len(cache.store) == 0
    assert ask(model, "q?") == ("second", "miss")
    assert ask(model, "q?", cc="no-cache") == ("third", "miss")
    assert ask(model, "q?") == ("third", "hit")  # no-cache still stores the fresh answer


def test_parse_cache_control() -> None:
    assert parse_cache_control(None) == (True, True)
    assert parse_cache_control("no-cache") == (False, True)
    assert parse_cache_control("max-age=0") == (False, True)
    assert parse_cache_control("No-Store, max-age=0") == (False, False)
    assert parse_cache_control("max-age=60") == (True, True)


def test_stream_is_cached_and_replayed_as_a_stream(cache: ResponseCache) -> None:
    inner = FakeChatModel(responder=lambda m: "one two three four")
    model = CachedModel(inner, cache)

    async def collect() -> tuple[list[str], str, int]:
        with cache_policy(ADMIN) as outcome:
            chunks = [c async for c in model.stream([Message("user", "count")])]
        deltas = [c.delta for c in chunks if c.delta]
        last = chunks[-1]
        assert last.usage is not None and last.finish_reason == "stop"
        return deltas, outcome.status, last.usage.completion_tokens

    first = asyncio.run(collect())
    second = asyncio.run(collect())
    assert first == (["one", " two", " three", " four"], "miss", 4)
    assert second == (["one", " two", " three", " four"], "hit", 4)
    assert len(inner.calls) == 1


def test_failed_stream_is_not_cached(cache: ResponseCache) -> None:
    class Breaks(FakeChatModel):
        async def stream(self, messages, options=None):  # type: ignore[no-untyped-def,override]
            yield StreamChunk("partial")
            raise RuntimeError("cut")

    async def run() -> None:
        with cache_policy(ADMIN):
            async for _ in CachedModel(Breaks(), cache).stream([Message("user", "x")]):
                pass

    with pytest.raises(RuntimeError):
        asyncio.run(run())
    assert len(cache.store) == 0


def test_a_failing_store_serves_without_the_cache(tmp_path: Path, events: Events) -> None:
    class Broken(SQLiteCacheStore):
        def get(self, key: str) -> bytes | None:
            raise StorageError("disk gone")

        def put(self, *args: object, **kwargs: object) -> None:
            raise StorageError("disk gone")

    c = ResponseCache(Broken(tmp_path / "c.sqlite3"), CacheSettings(), None, events)
    model = CachedModel(FakeChatModel(responder=lambda m: "fine"), c)
    assert ask(model, "q") == ("fine", "miss")
    assert events.errors == ["read", "write"]


def test_cached_embedder_embeds_each_text_once() -> None:
    inner = FakeEmbedder(32)
    e = CachedEmbedder(inner, max_entries=2)
    a = e.embed(["x", "y"])
    b = e.embed(["y", "x"])
    assert inner.texts_embedded == 2
    assert (a[0] == b[1]).all() and (a[1] == b[0]).all()
    e.embed(["z"])  # evicts "y", the least recently used
    e.embed(["y"])
    assert inner.texts_embedded == 4


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Is travel reimbursed?", "Is travel not reimbursed?", "negation"),
        ("Can I work remotely?", "Can't I work remotely?", "negation"),
        ("Is there a limit without approval?", "Is there a limit with approval?", "negation"),
        ("What is the 2024 budget?", "What is the 2025 budget?", "number"),
        ("Do I get three weeks?", "Do I get four weeks?", "number"),
        ("Where is the London office?", "Where is the Berlin office?", "entity"),
        ("What does the VPN policy say?", "What does the SSO policy say?", "entity"),
        ("How do I enable MFA on my laptop?", "How do I disable MFA on my laptop?", "opposite"),
        ("What is the maximum expense?", "What is the minimum expense?", "opposite"),
        ("Is economy class travel reimbursed?", "Is business class travel reimbursed?", "contrast"),
        ("What is the response time at night?", "What is the response time?", "contrast"),
        ("What is the maximum budget per employee?", "What is the budget per employee?", "qualifier"),
        ("How many days of leave do I get?", "How many leave days do I get?", None),
        ("What is the VPN policy?", "What does the VPN policy say?", None),
    ],
)
def test_guard(a: str, b: str, reason: str | None) -> None:
    assert guard_reason(a, b) == reason
    assert guard_reason(b, a) == reason


def test_guard_features() -> None:
    assert negations("I don't know, never") == 2
    assert numbers("It costs 1,000 dollars for two people") == {"1000", "two"}
    assert entities("Where is Berlin? Office in ACME and team X1") == {"berlin", "acme", "x1"}
