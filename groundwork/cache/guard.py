"""The false-hit guard of the semantic cache. Pure, no I/O.

Embeddings place "How do I enable SSO?" next to "How do I disable SSO?" and "Is travel reimbursed?"
next to "Is travel not reimbursed?". A semantic hit is only served when the two queries also agree on:

* negation (``not``, ``never``, ``no``, ``without``, ``n't``, ...),
* numbers (digits and number words),
* named entities and identifiers (capitalised words after the first, acronyms, tokens with digits),
* neither uses a word whose opposite the other uses (enable/disable, before/after, ...),
* neither has, alone, a word of a contrast set (economy/business, hourly/salaried, night/day, ...),
* and neither adds a quantifier the other lacks (maximum, minimum, total, ...).

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
    ("online", "offline"),
    ("within", "outside"),
    ("during", "outside"),
    ("with", "without"),
    ("employer", "employee"),
    ("sender", "recipient"),
    ("give", "receive"),
    ("send", "receive"),
    ("before", "since"),
    ("overpaid", "underpaid"),
    ("refund", "charge"),
]
_STEM = re.compile(r"(ing|ed|es|e|s|d)$")


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ied"):
        return word[:-3] + "y"  # denied -> deny
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
        if len(token) < 2:  # "I", and the letters of "L&D": not names
            sentence_start = False
            continue
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


_FUNCTION_WORDS = frozenset(
    """a an the and or but if of to in on at by for from with about as into than then so such this that
    these those there here it its i me my we our us you your he she they them their his her what which who
    whom whose when where why how is are was were be been being am do does did done have has had can could
    may might must shall should will would get gets got getting any some much many more most very just also
    please tell know want need let make like one per each every all there's what's it's i'm""".split()
)
_QUANTIFIERS = frozenset("maximum minimum max min average total cap least most only extra additional".split())
_CONTRASTS = [
    "economy business premium first",
    "hourly salaried contractor intern freelancer temporary permanent",
    "day night weekend weekday morning evening afternoon",
    "monday tuesday wednesday thursday friday saturday sunday",
    "january february march april may june july august september october november december",
    "daily weekly monthly quarterly yearly annual",
    "response resolution",
    "production staging development test",
    "laptop phone tablet desktop",
    "manager director employee team",
    "domestic international",
    "gross net",
]
_CONTRAST: dict[str, int] = {}
for _i, _line in enumerate(_CONTRASTS):
    for _w in _line.split():
        _CONTRAST[_stem(_w)] = _i


def content_words(text: str) -> frozenset[str]:
    """The stemmed words of ``text`` that carry meaning (function words left out)."""
    words = (t.lower().replace("\u2019", "'") for t in _tokens(text))
    return frozenset(_stem(w) for w in words if w not in _FUNCTION_WORDS and not w.isdigit())


def guard_reason(query: str, cached_query: str) -> str | None:
    """Why a semantic hit of ``query`` on an entry cached for ``cached_query`` must not be served.

    Returns ``"negation"``, ``"number"``, ``"entity"``, ``"opposite"``, ``"contrast"`` or ``"qualifier"``
    (the metric's label), or ``None`` when the queries agree on all of them.
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
    words_a, words_b = content_words(query), content_words(cached_query)
    if {_stem(w) for w in _QUANTIFIERS} & (words_a ^ words_b):
        return "qualifier"
    if any(w in _CONTRAST for w in words_a ^ words_b):
        return "contrast"  # economy vs business class, hourly vs salaried, "... at night"
    return None
