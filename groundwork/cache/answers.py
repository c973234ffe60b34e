"""``CachedAnswerer``: grounded answers from the cache, scoped and invalidated when documents change.

The key holds the question, the collection, the caller's permission scope, ``top_k`` and the filters,
the model, the prompt version (when the answerer has one) and the document store's ``generation``, which
every ingestion and deletion bumps: an answer cached before a collection changed is never served after.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from groundwork.cache.context import current_policy
from groundwork.cache.core import ResponseCache
from groundwork.cache.keys import answer_keys, permission_scope
from groundwork.rag.answer import Answer, Answerer
from groundwork.rag.retrieval import Filters
from groundwork.types import LOCAL_ADMIN, Citation, Principal, Usage


def answer_payload(answer: Answer) -> dict[str, Any]:
    """An :class:`Answer` as JSON-ready data (every field, so fields added later are kept too)."""
    return dataclasses.asdict(answer)


def answer_from_payload(data: dict[str, Any]) -> Answer:
    """The :class:`Answer` of :func:`answer_payload`'s data."""
    names = {f.name for f in dataclasses.fields(Answer)}
    values = {k: v for k, v in data.items() if k in names}
    values["citations"] = tuple(
        Citation(**{**c, "heading_path": tuple(c["heading_path"])}) for c in values.get("citations", ())
    )
    values["usage"] = Usage(**values.get("usage", {}))
    values["unsupported"] = tuple(values.get("unsupported", ()))
    values["timings"] = {"cache": 0.0}
    return Answer(**values)


def prompt_version_of(answerer: Answerer) -> str | None:
    """The prompt ``name@version`` an answerer renders, when it has one (the prompt registry's).

    Resolved on every call, so moving the ``production`` label to another version changes the key.
    """
    resolve = getattr(answerer, "resolve_prompt", None)
    if callable(resolve):
        ref = resolve()[0]
        if isinstance(ref, str):
            return ref
    for attr in ("prompt_version", "prompt"):
        value = getattr(answerer, attr, None)
        if isinstance(value, str):
            return value
    return None


class CachedAnswerer(Answerer):
    """An :class:`Answerer` whose :meth:`ask` looks in ``cache`` first."""

    cache: ResponseCache

    @classmethod
    def wrap(cls, answerer: Answerer, cache: ResponseCache) -> CachedAnswerer:
        """A cached copy of ``answerer`` (same retriever, model, settings)."""
        cached = cls.__new__(cls)
        cached.__dict__.update(vars(answerer))
        cached.cache = cache
        return cached

    async def ask(
        self,
        question: str,
        collection: str | None = "default",
        principal: Principal = LOCAL_ADMIN,
        on_token: Callable[[str], None] | None = None,
        top_k: int | None = None,
        filters: Filters | None = None,
    ) -> Answer:
        policy = current_policy()
        if not (policy.read or policy.write):
            return await super().ask(question, collection, principal, on_token, top_k, filters)
        key, bucket = answer_keys(
            question,
            collection,
            permission_scope(principal),
            index_version=self.retriever.documents.generation,
            model=self.model.name,
            top_k=top_k,
            filters=dataclasses.asdict(filters) if filters else None,
            prompt_version=prompt_version_of(self),
        )
        hit = await self.cache.alookup("answer", key, bucket, question) if policy.read else None
        policy.outcome.status = "hit" if hit is not None else "miss"
        policy.outcome.kind = hit.kind if hit is not None else None
        if hit is not None:
            answer = answer_from_payload(hit.payload)
            if on_token is not None:
                for piece in re.findall(r"\s*\S+", answer.draft or answer.text):
                    on_token(piece)
            return dataclasses.replace(answer, question=question)
        answer = await super().ask(question, collection, principal, on_token, top_k, filters)
        if policy.write:
            self.cache.put(key, bucket, question, answer_payload(answer))
        return answer
