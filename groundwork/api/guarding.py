"""The guards at the HTTP edge: which text fields of a request and a response are guarded, and how.

Input: the user messages of ``POST /v1/chat/completions``, the ``question`` of ``POST /v1/answers`` and
the ``query`` of ``POST /v1/retrieve`` go through :meth:`~groundwork.security.guards.Guards.check_input`;
redacted text is written back into the body the route then reads. Output: the non-streamed answers of
the chat and answer routes go through ``check_output`` (PII, system prompt leaks). A body that is not
JSON is left to the route, which answers 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from groundwork.config import Settings
from groundwork.rag import answer as rag_answer
from groundwork.security.guards import GuardDecision, Guards

INPUT_GUARDED = frozenset({"/v1/chat/completions", "/v1/answers", "/v1/retrieve"})
OUTPUT_GUARDED = frozenset({"/v1/chat/completions", "/v1/answers"})
TOKEN_LIMITED = frozenset({"/v1/chat/completions", "/v1/answers", "/v1/embeddings"})


@dataclass
class GuardedRequest:
    """What the edge learnt from a request body: the (possibly redacted) body and the token estimate."""

    body: bytes
    group: str = ""
    tokens: int = 0
    prompts: list[str] = field(default_factory=list)
    decisions: tuple[GuardDecision, ...] = ()


def _text_slots(path: str, data: dict[str, Any]) -> tuple[list[tuple[Any, Any]], list[str]]:
    """References ``(container, key)`` to the guarded strings, and the request's own system prompts."""
    slots: list[tuple[Any, Any]] = []
    systems: list[str] = []
    if path == "/v1/chat/completions":
        for m in data.get("messages") or []:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if m.get("role") in ("system", "developer") and isinstance(content, str):
                systems.append(content)
            if m.get("role") != "user":
                continue
            if isinstance(content, str):
                slots.append((m, "content"))
            elif isinstance(content, list):
                slots += [
                    (p, "text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                ]
    else:
        name = "question" if path == "/v1/answers" else "query"
        if isinstance(data.get(name), str):
            slots.append((data, name))
    return slots, systems


def _all_text(value: Any) -> int:
    """Characters of every string in a JSON value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_all_text(v) for v in value.values())
    if isinstance(value, list):
        return sum(_all_text(v) for v in value)
    return 0


def _token_estimate(path: str, data: dict[str, Any], settings: Settings) -> tuple[str, int]:
    """The model group a request uses and its token estimate (text / 4 + the tokens it may generate)."""
    if path == "/v1/embeddings":
        return f"embeddings:{data.get('model') or settings.embeddings.model}", _all_text(
            data.get("input")
        ) // 4
    if path == "/v1/answers":
        context = 3 * settings.chunking.max_tokens
        tokens = _all_text(data.get("question")) // 4 + context + settings.answer.max_tokens
        return settings.models.default_group, tokens
    max_tokens = data.get("max_completion_tokens") or data.get("max_tokens") or 256
    generated = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 256
    group = data.get("model") if isinstance(data.get("model"), str) else settings.models.default_group
    return str(group), _all_text(data.get("messages")) // 4 + generated


def guard_request(path: str, body: bytes, guards: Guards, settings: Settings) -> GuardedRequest:
    """Guard a request body (raises ``GuardBlockedError`` under a block policy)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return GuardedRequest(body)
    if not isinstance(data, dict):
        return GuardedRequest(body)
    out = GuardedRequest(body)
    if path in TOKEN_LIMITED:
        out.group, out.tokens = _token_estimate(path, data, settings)
    if path not in INPUT_GUARDED:
        return out
    slots, systems = _text_slots(path, data)
    out.prompts = [*systems, getattr(rag_answer, "SYSTEM_PROMPT", "")]
    result = guards.check_input([container[key] for container, key in slots])
    out.decisions = result.decisions
    changed = False
    for (container, key), text in zip(slots, result.texts, strict=True):
        if container[key] != text:
            container[key] = text
            changed = True
    if changed:
        out.body = orjson.dumps(data)
    return out


def guard_response(path: str, body: bytes, guards: Guards, prompts: list[str]) -> bytes:
    """Guard a JSON response body (raises ``ContentPolicyError`` under a block policy)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(data, dict):
        return body
    slots: list[tuple[Any, Any]] = []
    if path == "/v1/answers":
        slots = [(data, k) for k in ("answer", "draft") if isinstance(data.get(k), str)]
    else:
        for choice in data.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                slots.append((message, "content"))
    if not slots:
        return body
    result = guards.check_output([c[k] for c, k in slots], prompts)
    changed = False
    for (container, key), text in zip(slots, result.texts, strict=True):
        if container[key] != text:
            container[key] = text
            changed = True
    return orjson.dumps(data) if changed else body
