"""Property: through the HTTP API, no principal ever sees a marker of a document outside its groups.

Hypothesis generates documents (each with groups, possibly none, and a secret marker string) and
principals (role and groups), uploads the documents as an admin, then asks and retrieves as each
principal. Every surface a principal can read is checked: retrieved chunks, answers (text, draft and
citations), grounded chat completions, the document listing, responses served from the response cache
(on, exact and semantic: every principal asks the same question, so a cache shared across scopes would
leak at once) and the traces of the principal's requests. To check another surface, append a function
to :data:`SURFACES`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from groundwork.api import create_app
from groundwork.container import Container
from groundwork.security.permissions import can_read
from groundwork.types import Principal
from tests.security_helpers import bearer, secure_container

GROUPS = ("g0", "g1", "g2", "g3")


@dataclass(frozen=True)
class Doc:
    name: str
    groups: tuple[str, ...]
    marker: str


@dataclass(frozen=True)
class Ask:
    """One request context: a client, a principal's headers, a collection and a query hitting every doc."""

    http: TestClient
    headers: dict[str, str]
    collection: str
    query: str
    container: Container


def _retrieved(a: Ask) -> str:
    r = a.http.post(
        "/v1/retrieve", json={"query": a.query, "collection": a.collection, "top_k": 20}, headers=a.headers
    )
    assert r.status_code == 200, r.text
    return r.text


def _answer(a: Ask) -> str:
    r = a.http.post(
        "/v1/answers", json={"question": a.query, "collection": a.collection, "top_k": 20}, headers=a.headers
    )
    assert r.status_code == 200, r.text
    return r.text


def _streamed_answer(a: Ask) -> str:
    body = {"question": a.query, "collection": a.collection, "stream": True}
    r = a.http.post("/v1/answers", json=body, headers=a.headers)
    assert r.status_code == 200, r.text
    return r.text


def _grounded_chat(a: Ask) -> str:
    body = {
        "model": "fake",
        "messages": [{"role": "user", "content": a.query}],
        "rag": {"collection": a.collection, "top_k": 20},
    }
    r = a.http.post("/v1/chat/completions", json=body, headers=a.headers)
    assert r.status_code == 200, r.text
    return r.text


def _listing(a: Ask) -> str:
    r = a.http.get(f"/v1/collections/{a.collection}/documents", headers=a.headers)
    assert r.status_code in (200, 403), r.text  # users may not list collections at all
    return r.text


def _cached_answer(a: Ask) -> str:
    """The same question again: served from the cache (within this principal's scope only)."""
    body = {"question": a.query, "collection": a.collection, "top_k": 20}
    r = a.http.post("/v1/answers", json=body, headers=a.headers)
    assert r.status_code == 200 and r.headers["x-groundwork-cache"] == "hit", r.headers
    return r.text


def _traces(a: Ask) -> str:
    """Everything recorded in the trace of one of the principal's answers."""
    r = a.http.post("/v1/answers", json={"question": a.query, "collection": a.collection}, headers=a.headers)
    assert r.status_code == 200, r.text
    obs = a.container.observability
    assert obs is not None and obs.trace_store is not None
    assert obs.tracing.force_flush()
    spans = obs.trace_store.trace(r.headers["x-trace-id"])
    assert spans, "the answer left no trace"
    return repr(spans)


SURFACES: list[Callable[[Ask], str]] = [
    _retrieved,
    _answer,
    _streamed_answer,
    _grounded_chat,
    _listing,
    _cached_answer,
    _traces,
]
"""Every place a principal can read document text from."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Container, TestClient, str]]:
    c = secure_container(tmp_path_factory.mktemp("prop") / "data", cache={"enabled": True, "semantic": True})
    admin, _ = c.security.keys.create("root", "admin")
    with TestClient(create_app(c), base_url="http://gw") as http:
        yield c, http, admin
    c.close()


_counter = itertools.count()

group_sets = st.lists(st.sampled_from(GROUPS), max_size=3, unique=True).map(lambda g: tuple(sorted(g)))
docs_st = st.lists(group_sets, min_size=1, max_size=5)
principals_st = st.lists(
    st.tuples(st.sampled_from(["user", "builder", "admin"]), group_sets), min_size=1, max_size=4
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc_groups=docs_st, principals=principals_st, marker_seed=st.integers(0, 2**32))
def test_no_principal_sees_a_marker_outside_its_groups(
    world: tuple[Container, TestClient, str],
    doc_groups: list[tuple[str, ...]],
    principals: list[tuple[str, tuple[str, ...]]],
    marker_seed: int,
) -> None:
    container, http, admin = world
    n = next(_counter)
    collection = f"prop{n}"
    docs = [Doc(f"d{i}.md", g, f"mk{marker_seed:x}x{n}x{i}") for i, g in enumerate(doc_groups)]
    body = {
        "documents": [
            {
                "name": d.name,
                "text": f"# Project note {i}\n\nThe code word of project {i} is {d.marker}. "
                "Employees keep the code word confidential.",
                "groups": list(d.groups),
            }
            for i, d in enumerate(docs)
        ]
    }
    r = http.post(f"/v1/collections/{collection}/documents", json=body, headers=bearer(admin))
    assert r.status_code == 201, r.text
    query = "What is the code word of the project note?"  # matches every document, names no marker
    for role, groups in principals:
        key, _ = container.security.keys.create(f"p{n}", role, groups)
        principal = Principal(f"p{n}", role, groups)  # type: ignore[arg-type]
        ask = Ask(http, bearer(key), collection, query, container)
        hidden = [d.marker for d in docs if not can_read(principal, d.groups)]
        visible = [d.marker for d in docs if can_read(principal, d.groups)]
        for surface in SURFACES:
            text = surface(ask)
            leaked = [m for m in hidden if m in text]
            assert not leaked, f"{surface.__name__} showed {leaked} to {role} {groups}"
        # the filter is not simply "show nothing": retrieval finds every readable document
        found = _retrieved(ask)
        assert all(m in found for m in visible), (role, groups, visible)


def test_surfaces_cover_the_read_routes() -> None:
    assert {s.__name__ for s in SURFACES} >= {
        "_retrieved",
        "_answer",
        "_grounded_chat",
        "_listing",
        "_cached_answer",
        "_traces",
    }
    assert Path(__file__).name.startswith("test_security")
