"""Feedback to data: answers users rated, as an evaluation suite and as fine-tuning examples.

The feedback store (with ``POST /v1/feedback``) hands over :class:`FeedbackRecord`\\ s; this module
only turns them into data:

- :func:`to_suite` - a suite in :mod:`groundwork.evals.suite`'s format. A well-rated answer becomes
  a regression case (cite the same documents, stay close to the answer); a badly rated one becomes a
  case judged against the user's complaint (needs a judge model: ``prompts.judge_model``).
- :func:`to_chat_jsonl` - well-rated answers in the OpenAI chat fine-tuning format, one JSON object
  per line: ``{"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from groundwork.evals.suite import parse_suite

_MARKER = re.compile(r"\s*\[\d+\]")


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One rated answer: what was asked, answered and cited, and what the user thought of it."""

    question: str
    answer: str
    citations: tuple[str, ...] = ()
    """Document ids (or file names) the answer cited."""
    score: float = 1.0
    comment: str = ""
    trace_id: str = ""


def _clean(answer: str) -> str:
    return _MARKER.sub("", answer).strip()


def _case_id(record: FeedbackRecord, taken: set[str]) -> str:
    base = "fb-" + (record.trace_id[:12] or hashlib.sha256(record.question.encode()).hexdigest()[:12])
    case_id, n = base, 2
    while case_id in taken:
        case_id, n = f"{base}-{n}", n + 1
    taken.add(case_id)
    return case_id


def _case(record: FeedbackRecord, case_id: str, good: bool) -> dict[str, Any]:
    case: dict[str, Any] = {"id": case_id, "question": record.question}
    if good:
        case["expected"] = _clean(record.answer)
        case["gold_documents"] = list(record.citations)
        checks: list[dict[str, Any]] = [{"type": "similarity", "threshold": 0.6}]
        if record.citations:
            checks.insert(0, {"type": "citation"})
        case["assert"] = checks
        return case
    complaint = record.comment.strip() or "no comment given"
    rubric = (
        f"A user rated an earlier answer to this question as bad ({complaint}). The earlier answer was: "
        f"{_clean(record.answer)!r}. Pass only if the new output does not repeat that mistake and "
        "answers the question from the documents, or says the documents do not cover it."
    )
    case["assert"] = [{"type": "judge", "rubric": rubric}]
    return case


def to_suite(
    records: Sequence[FeedbackRecord],
    name: str = "feedback",
    collection: str = "default",
    good_score: float = 0.5,
    pass_rate: float = 0.8,
) -> dict[str, Any]:
    """A suite (as a mapping, validated) with one case per record; ``score >= good_score`` is good."""
    taken: set[str] = set()
    cases = [_case(r, _case_id(r, taken), r.score >= good_score) for r in records if r.question.strip()]
    suite = {
        "name": name,
        "description": f"Exported from {len(cases)} rated answers.",
        "target": {"kind": "rag", "collection": collection},
        "thresholds": {"pass_rate": pass_rate},
        "cases": cases,
    }
    parse_suite(suite, source=f"exported suite {name!r}")  # the export is always loadable
    return suite


def to_suite_yaml(records: Sequence[FeedbackRecord], **options: Any) -> str:
    """:func:`to_suite` as YAML, ready for ``groundwork eval``."""
    return yaml.safe_dump(to_suite(records, **options), sort_keys=False, allow_unicode=True, width=100)


def to_chat_jsonl(
    records: Sequence[FeedbackRecord], system: str | None = None, good_score: float = 0.5
) -> str:
    """Well-rated answers as chat fine-tuning examples, one JSON line each (citation markers removed)."""
    lines = []
    for r in records:
        if r.score < good_score or not r.question.strip() or not _clean(r.answer):
            continue
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {"role": "user", "content": r.question},
            {"role": "assistant", "content": _clean(r.answer)},
        ]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)
