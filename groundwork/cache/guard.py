"""The false-hit guard of the semantic cache. Pure, no I/O.

Embeddings place "How do I enable SSO?" next to "How do I disable SSO?" and "Is travel reimbursed?"
next to "Is travel not reimbursed?". A semantic hit is only served when the two queries also agree on:

* negation (``not``, ``never``, ``no``, ``without``, ``n't``, ...),
* numbers (digits and number words),
* named entities and identifiers (capitalised words after the first, acronyms, tokens with digits),
* and neither uses a word whose opposite the other uses (enable/disable, before/after, ...).

:func:`guard_reason` returns why two queries differ, or ``None`` when the hit may be served.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'._-]*")
_NEGATIONS = frozenset(
    "not no never none nobody nothing neither nor without cannot except excluding unless".split()
)
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred "
    "thousand million billion first second third fourth fifth half quarter twice double triple".split()
)
_OPPOSITES = [
    ("enable", "disable"),
    ("allow", "deny"),
    ("allow", "forbid"),
    ("before", "after"),
    ("increase", "decrease"),
    ("add", "remove"),
    ("minimum", "maximum"),
    ("min", "max"),
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("highest", "lowest"),
    ("first", "last"),
    ("open", "close"),
    ("start", "stop"),
    ("start", "end"),
    ("buy", "sell"),
    ("include", "exclude"),
    ("above", "below"),
    ("over", "under"),
    ("accept", "reject"),
    ("inside", "outside"),
    ("import", "export"),
    ("upload", "download"),
    ("internal", "external"),
    ("true", "false"),
    ("pass", "fail"),
    ("win", "lose"),
    ("join", "leave"),
    ("hire", "fire"),
    ("paid", "unpaid"),
    ("legal", "illegal"),
    ("valid", "invalid"),
    ("possible", "impossible"),
    ("lock", "unlock"),
    ("encrypt", "decrypt"),
    ("on", "off"),
    ("in", "out"),
    ("up", "down"),
    ("early", "late"),
    ("longer", "shorter"),
    ("longest", "shortest"),
    ("larger", "smaller"),
    ("largest", "smallest"),
    ("old", "new"),
    ("oldest", "newest"),
    ("north", "south"),
    ("east", "west"),
    ("left", "right"),
    ("men", "women"),
    ("male", "female"),
    ("approve", "reject"),
    ("public", "private"),
    ("full-time", "part-time"),
]
_STEM = re.compile(r"(ing|ed|es|s|d)$")


def _stem(word: str) -> str:
    return _STEM.sub("", word) if len(word) > 4 else word


_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in _OPPOSITES:
    _OPPOSITE.setdefault(_stem(_a), set()).add(_stem(_b))
    _OPPOSITE.setdefault(_stem(_b), set()).add(_stem(_a))


def _tokens(text: str) -> list[str]:
    return [t.strip("'._-") for t in _TOKEN.findall(text)]


def negations(text: str) -> int:
    """How many negating words ``text`` has (``n't`` contractions included)."""
    lowered = text.lower().replace("\u2019", "'").replace("n't", " not")
    return sum(1 for w in re.findall(r"[a-z]+", lowered) if w in _NEGATIONS)


def numbers(text: str) -> frozenset[str]:
    """Numbers in ``text``: digit groups (``1,000`` -> ``1000``) and number words."""
    found = {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)}
    found |= {w for w in (t.lower() for t in _tokens(text)) if w in _NUMBER_WORDS}
    return frozenset(found)


def entities(text: str) -> frozenset[str]:
    """Names and identifiers: capitalised words not starting a sentence, acronyms, tokens with digits."""
    found: set[str] = set()
    sentence_start = True
    for raw in re.findall(r"[A-Za-z0-9][A-Za-z0-9'._-]*|[.!?]", text):
        if raw in ".!?":
            sentence_start = True
            continue
        token = raw.strip("'._-")
        if (
            (token[:1].isupper() and not sentence_start)
            or (len(token) > 1 and token.isupper())
            or (any(c.isdigit() for c in token) and any(c.isalpha() for c in token))
        ):
            found.add(token.lower())
        sentence_start = False
    return frozenset(found)


def _opposed(a: set[str], b: set[str]) -> str | None:
    for word in a - b:
        for other in _OPPOSITE.get(word, ()):
            if other in b and other not in a:
                return f"{word}/{other}"
    return None


def guard_reason(query: str, cached_query: str) -> str | None:
    """Why a semantic hit of ``query`` on an entry cached for ``cached_query`` must not be served.

    Returns ``"negation"``, ``"number"``, ``"entity"`` or ``"opposite"`` (the metric's label), or
    ``None`` when the queries agree on all four.
    """
    if (negations(query) > 0) != (negations(cached_query) > 0):
        return "negation"
    if numbers(query) != numbers(cached_query):
        return "number"
    if entities(query) != entities(cached_query):
        return "entity"
    a = {_stem(w.lower()) for w in _tokens(query)}
    b = {_stem(w.lower()) for w in _tokens(cached_query)}
    if _opposed(a, b) or _opposed(b, a):
        return "opposite"
    return None
