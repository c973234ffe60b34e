"""Translating retrieval's FTS5 keyword queries into PostgreSQL tsquery texts (pure, no server)."""

from __future__ import annotations

from groundwork.stores.postgres.filters import filter_condition
from groundwork.stores.postgres.text import WeightedQuery, match_query, plain_query
from groundwork.stores.protocols import ChunkFilter


def test_plain_query_ors_content_words_and_neutralises_syntax() -> None:
    assert plain_query("What is the leave policy? leave!") == WeightedQuery(((1.0, "leave | policy"),))
    assert plain_query("secret & !x | y <-> z:*") == WeightedQuery(((1.0, "secret | x | y | z"),))
    assert plain_query("the and of") is None
    assert plain_query("") is None


def test_match_query_reads_repeats_as_weights() -> None:
    q = match_query('"tapirs" OR "tapirs" OR "lemurs" OR "tapirs" OR "night zoo"')
    assert q == WeightedQuery(((3.0, "tapirs"), (1.0, "lemurs | night <-> zoo")))
    assert q.any_term == "(tapirs) | (lemurs | night <-> zoo)"
    assert match_query('"" OR "&|!"') is None
    assert match_query("no quotes at all") == plain_query("no quotes at all")


def test_filter_condition_binds_every_value() -> None:
    flt = ChunkFilter(
        collection="c", groups=("hr",), tags=(), source_prefix="a%", modified_after=1.0, modified_before=2.0
    )
    condition, params = filter_condition(flt)
    text = condition.as_string(None)
    assert text.count("%s") == len(params) == 6
    assert '"c"."groups" && %s::text[]' in text and "starts_with" in text
    assert params == ["c", ["hr"], [], "a%", 1.0, 2.0]


def test_common_lexemes_are_dropped_unless_nothing_would_remain() -> None:
    from groundwork.stores.postgres.text import drop_common

    shares = {"the": 0.9, "ward": 0.5, "tapir": 0.01, "o'neil": 0.6}
    assert drop_common(["'the' | 'tapir'", "'ward'"], shares, 0.2) == ["'tapir'", ""]
    assert drop_common(["'the' | 'ward'"], shares, 0.2) == ["'the' | 'ward'"]  # all common: keep
    assert drop_common(["'o''neil' | 'zebra'"], shares, 0.2) == ["'zebra'"]
    assert drop_common(["'night' <-> 'ward' | 'the'"], shares, 0.2) == ["'night' <-> 'ward' | 'the'"]
    assert drop_common(["'tapir'"], {}, 0.2) == ["'tapir'"]
