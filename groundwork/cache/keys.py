"""Cache keys: a canonical form of everything that changes a response, hashed. Pure, no I/O.

The exact key covers the model group, every message, the generation options, the prompt version and
the caller's permission scope; the semantic *bucket* covers the same minus the text of the last user
message (the query), so a paraphrase is looked up only among entries that agree on everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import orjson

from groundwork.types import GenerationOptions, Message, Principal

KEY_VERSION = "v1"
"""Bumped when the canonical form changes, so old entries are never read with a new meaning."""


def permission_scope(principal: Principal) -> str:
    """What a principal may see, as a string: admins share one scope, others their role and groups.

    Two principals share cache entries only when they could read exactly the same documents.
    """
    if principal.is_admin:
        return "admin"
    return f"{principal.role}:" + ",".join(sorted(set(principal.groups)))


def digest(parts: object) -> str:
    """The sha256 of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _options(options: GenerationOptions | None) -> list[object]:
    o = options or GenerationOptions()
    return [o.max_tokens, round(o.temperature, 6), list(o.stop)]


def query_of(messages: Sequence[Message]) -> str:
    """The text a semantic lookup compares: the last user message."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def chat_keys(
    group: str,
    messages: Sequence[Message],
    options: GenerationOptions | None,
    scope: str,
    prompt_version: str | None = None,
) -> tuple[str, str]:
    """``(exact key, semantic bucket)`` of a chat request."""
    msgs = [[m.role, m.content] for m in messages]
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    context = [[m.role, "" if i == last_user else m.content] for i, m in enumerate(messages)]
    common = [KEY_VERSION, "chat", group, _options(options), prompt_version, scope]
    return "c:" + digest([*common, msgs]), "cb:" + digest([*common, context])


def answer_keys(
    question: str,
    collection: str | None,
    scope: str,
    *,
    index_version: int,
    model: str,
    top_k: int | None,
    filters: object,
    prompt_version: str | None = None,
) -> tuple[str, str]:
    """``(exact key, semantic bucket)`` of a grounded answer.

    ``index_version`` is the document store's generation: any ingestion or deletion changes it, so an
    answer cached before a collection changed is never served after.
    """
    common = [KEY_VERSION, "answer", collection, scope, index_version, model, top_k, filters, prompt_version]
    return "a:" + digest([*common, question]), "ab:" + digest(common)
