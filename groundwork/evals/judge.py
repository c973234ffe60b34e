"""LLM-as-judge: grade an output against a rubric, repairing or retrying malformed verdicts.

The judge is asked for ``{"score": 0..1, "pass": bool, "reason": "..."}``. Models get this wrong in
predictable ways (a code fence, prose around the object, single quotes, Python ``True``, a trailing
comma, ``score: 7/10``); :func:`parse_verdict` repairs those without another call. When the reply
cannot be repaired the judge is asked again, told what was wrong, up to ``attempts`` calls; then a
:class:`~groundwork.errors.JudgeOutputError` lists every reply, and the case is reported broken.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from groundwork.errors import JudgeOutputError
from groundwork.models.base import ChatModel
from groundwork.prompts.template import PromptTemplate
from groundwork.types import GenerationOptions, Message

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)
_SCORE = re.compile(r"\bscore\b[\"']?\s*[:=]\s*([0-9]*\.?[0-9]+)(?:\s*/\s*(10|100|5|1))?", re.I)
_PASS = re.compile(r"\bpass(?:ed)?\b[\"']?\s*[:=]\s*[\"']?(true|false|yes|no)", re.I)
_REASON = re.compile(r"\breason\b[\"']?\s*[:=]\s*[\"']?([^\"'\n}]*)", re.I)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A judge's grade: ``score`` in 0..1, whether it passes, why, and how many calls it took."""

    score: float
    passed: bool
    reason: str
    attempts: int = 1
    repaired: bool = False


class VerdictFormatError(ValueError):
    """A judge reply that could not be read as a verdict (pure parsing; no model involved)."""


def _as_object(text: str) -> tuple[dict[str, object] | None, bool]:
    """The JSON object in ``text`` and whether it needed repair (prose around it, quotes, commas)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None, True
    body = text[start : end + 1]
    fixed = re.sub(r",\s*([}\]])", r"\1", body)
    fixed = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", fixed))
    for n, candidate in enumerate((body, fixed, fixed.replace("'", '"'))):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value, n > 0 or body != text.strip()
    return None, True


def _score(raw: object, scale: str | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise VerdictFormatError(f"score must be a number, got {raw!r}")
    try:
        score = float(raw)
    except ValueError as exc:
        raise VerdictFormatError(f"score must be a number, got {raw!r}") from exc
    if scale is not None:
        score /= float(scale)
    if not 0 <= score <= 1:
        raise VerdictFormatError(f"score must be between 0 and 1, got {score}")
    return score


def _passed(raw: object, score: float, pass_score: float) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "yes", "false", "no"):
        return raw.lower() in ("true", "yes")
    return score >= pass_score


def parse_verdict(text: str, pass_score: float = 0.5) -> Verdict:
    """Read a judge's reply, repairing common defects; :class:`VerdictFormatError` says what is wrong."""
    fence = _FENCE.search(text)
    body = fence.group(1) if fence else text
    obj, repaired = _as_object(body)
    if obj is not None:
        if "score" not in obj:
            raise VerdictFormatError("the JSON object has no `score`")
        score = _score(obj["score"])
        reason = obj.get("reason", "")
        passed = _passed(obj.get("pass"), score, pass_score)
        return Verdict(score, passed, str(reason), repaired=repaired or fence is not None)
    match = _SCORE.search(body)
    if match is None:
        raise VerdictFormatError("no JSON object and no `score: <number>` in the reply")
    score = _score(match.group(1), match.group(2))
    pass_match = _PASS.search(body)
    reason = _REASON.search(body)
    return Verdict(
        score,
        _passed(pass_match.group(1) if pass_match else None, score, pass_score),
        reason.group(1).strip() if reason else "",
        repaired=True,
    )


class LLMJudge:
    """Grades outputs with a chat model and a judge prompt (``evals.judge`` in the registry)."""

    def __init__(
        self,
        model: ChatModel,
        template: PromptTemplate,
        attempts: int = 3,
        prompt_ref: str = "",
        max_tokens: int = 200,
    ) -> None:
        self.model = model
        self.template = template
        self.attempts = attempts
        self.prompt_ref = prompt_ref
        self.max_tokens = template.model.max_tokens or max_tokens

    async def grade(
        self, rubric: str, output: str, input: str = "", expected: str = "", pass_score: float = 0.5
    ) -> Verdict:
        """Grade ``output``; retries with the parse error when the reply is unreadable."""
        messages = self.template.render_messages(
            {"rubric": rubric, "input": input, "output": output, "expected": expected}
        )
        options = GenerationOptions(max_tokens=self.max_tokens, temperature=0.0)
        replies: list[str] = []
        for attempt in range(1, self.attempts + 1):
            completion = await self.model.generate(messages, options)
            replies.append(completion.text)
            try:
                verdict = parse_verdict(completion.text, pass_score)
            except VerdictFormatError as exc:
                messages = [
                    *messages,
                    Message("assistant", completion.text),
                    Message(
                        "user",
                        f"That reply could not be read ({exc}). Reply with only a JSON object: "
                        '{"score": <0 to 1>, "pass": <true|false>, "reason": "<one sentence>"}',
                    ),
                ]
                continue
            return Verdict(verdict.score, verdict.passed, verdict.reason, attempt, verdict.repaired)
        raise JudgeOutputError(
            f"the judge ({self.model.name}) gave no readable verdict in {self.attempts} attempts",
            details={"replies": [r[:500] for r in replies]},
        )
