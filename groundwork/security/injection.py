"""Prompt injection heuristics: weighted patterns over the text and a de-obfuscated copy of it.

Each rule has a weight, cheap trigger words (the regex runs only when one occurs in the lower-cased
text, which keeps a 4,000-character benign text in the sub-millisecond range) and a pattern. A text
whose matched rules weigh at least :data:`INJECTION_THRESHOLD` is an injection. Strong signals weigh 1
on their own (``ignore all previous instructions``, chat-template tokens, instructions addressed to "the
AI" inside a document); weak ones (``from now on``, ``hypothetically``, role play) need company.

The text is also scanned after undoing common obfuscations: letters spaced apart, leetspeak digits,
hyphens inside words, and base64 runs. Detection rates and false positives are measured by
``benchmarks/guards.py`` (see ``benchmarks/RESULTS.md``); heuristics miss paraphrases, so the policy
should be read as a filter for the common attacks, not a proof of safety.
"""

from __future__ import annotations

import base64
import binascii
import re

from groundwork.security.findings import Finding

INJECTION_THRESHOLD = 1.0
"""A text whose matched heuristics weigh at least this much is taken for a prompt injection."""

_V = r"(?:ignore|disregard|forget|skip|override|bypass|drop|neglect|nevermind|never\s+mind|scratch)"
_PRIOR = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|all|any|the|your|these|those|system|initial|"
    r"original|following|other|my)"
)
_RULES = (
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|guidance|context|commands|orders|"
    r"constraints|restrictions|programming)"
)
_AI = r"(?:ai|assistants?|chatbots?|bots?|language\s+models?|llms?|models?)"

_Rule = tuple[float, tuple[str, ...], str]
_RULE_SPECS: tuple[_Rule, ...] = (
    # overriding the instructions
    (1.0, ("ignor", "disregard", "forget", "skip", "overrid", "bypass", "drop", "neglect", "never",
           "scratch"),
     rf"\b{_V}\b(?:\s+[\w']+){{0,3}}?\s+{_PRIOR}(?:\s+[\w']+){{0,2}}?\s+{_RULES}\b"),
    (1.0, ("ignor", "disregard", "forget"),
     rf"\b{_V}\s+(?:everything|all)\s+(?:you\s+(?:were|have\s+been)\s+told|(?:said|written)\s+(?:above|before))"),
    (1.0, ("new", "updated", "real", "actual", "true", "revised", "overrid"),
     r"\b(?:new|updated|real|actual|true|override|revised)\s+(?:system\s+)?"
     r"(?:instructions?|task|policy|objective|goal)\s*(?::|is\b)"),
    (1.0, ("supersede", "overrid", "replace", "cancel"),
     r"\b(?:supersedes?|overrides?|replaces?|cancels?)\s+(?:all\s+)?(?:your|the|any|previous|prior)\s+"
     r"(?:\w+\s+)?(?:instructions|rules|guidelines|prompt|directives)"),
    (0.6, ("stop everything",), r"\bstop\s+everything\b"),
    (0.5, ("just",), r"\bjust\s+(?:say|print|output|write|reply|respond)\b"),
    (0.6, ("follow", "obey", "comply"),
     r"\b(?:do\s+not|don't|never)\s+(?:follow|obey|comply\s+with)\s+(?:your|the|any)\b"),
    # leaking the prompt
    (1.0, ("prompt", "instruction", "message", "rules", "directive"),
     r"\b(?:reveal|show|print|repeat|output|display|leak|dump|tell\s+me|give\s+me|what\s+(?:is|are|did|was|were)|"
     r"spell[\s-]check|write\s+out|list)\b(?:\s+[\w']+){0,5}?\s+(?:your|the|my)\s+(?:\w+\s+)?"
     r"(?:system|initial|original|hidden|secret|developer|previous|preceding|first)\s+"
     r"(?:prompt|instructions?|message|rules|directives)"),
    (1.0, ("above", "before", "preceding", "prior"),
     r"\b(?:repeat|print|output|copy|reproduce|show|echo)\b(?:\s+\w+){0,3}?\s+"
     r"(?:text|words|everything|message|content|lines?)\s+(?:above|before|preceding|prior)\b"),
    (0.6, ("you were", "you follow", "you received"),
     r"\b(?:rules|instructions|prompt|guidelines)\b[^.?!\n]{0,30}\byou\s+(?:were\s+(?:told|given)|follow|received)"),
    (0.5, ("verbatim", "word for word"), r"\bverbatim\b|\bword\s+for\s+word\b"),
    # jailbreaks and role play
    (1.0, ("you are", "you're"),
     r"\byou(?:\s+are|'re)\s+(?:now\s+)?(?:DAN|in\s+developer\s+mode|jailbroken|unrestricted|unfiltered|free\s+from)\b"),
    (1.0, ("mode", "jailbr", "anything now"),
     r"\b(?:god|jailbreak|DAN)\s+mode\b|\bjailbr(?:eak|oken)\b|\bdo\s+anything\s+now\b"),
    (0.6, ("developer mode",), r"\bdeveloper\s+mode\b"),
    (0.6, ("from now on",), r"\bfrom\s+now\s+on,?\s+(?:you|your|respond|answer|act|always)\b"),
    (1.0, ("pretend", "act", "behave", "play", "imagine"),
     r"\b(?:pretend|act|behave|role-?play|imagine)\b(?:\s+[\w']+){0,5}?\s+"
     r"(?:unrestricted|unfiltered|uncensored|evil|rogue|jailbroken|different\s+(?:ai|assistant|model|bot))\b"),
    (0.7, ("without", "no "),
     r"\b(?:without|with\s+no|has\s+no|have\s+no|had\s+no)\s+(?:any\s+)?(?:restrictions|filters|limitations|"
     r"censorship|rules|guidelines|content\s+policy|safety\s+rules|limits)\b"),
    (0.5, ("role", "hypothetical"), r"\brole\s*-?\s*play\b|\bhypothetically\b"),
    (1.0, ("grandm",), r"\bgrand(?:ma|mother)\b.{0,80}\b(?:passwords?|keys?|secrets?|licen[cs]e)"),
    (0.5, ("password", "root", "admin"),
     r"\b(?:root|admin|administrator)\s+(?:access|password|credentials)\b|\bpasswords\b"),
    (1.0, ("overrid", "bypass", "disabl", "turn off", "deactivat", "remov"),
     r"\b(?:override|bypass|disable|turn\s+off|deactivate|remove)\s+(?:your|the|all|any)\s+(?:\w+\s+)?"
     r"(?:safety|content|security)?\s*(?:filters?|guardrails?|restrictions|safeguards|content\s+polic(?:y|ies))\b"),
    # fake turns and chat-template tokens
    (1.0, ("system", "assistant"), r"(?:^|\n)\s*(?:#{2,}\s*)?(?:system|assistant)\s*(?:prompt|message)?\s*:"),
    (1.0, ("<|", "inst]", "<<sys", "<</sys"),
     r"<\|im_start\|>|<\|system\|>|\[/?INST\]|<</?SYS>>|<\|endoftext\|>"),
    # instructions addressed to the model inside data (indirect injection)
    (1.0, ("must", "should", "shall", "will", "need to", "are to"),
     rf"\b{_AI}\b[^.\n]{{0,40}}\b(?:must|should|shall|will|are\s+to|need\s+to)\s+(?:now\s+)?(?:always\s+)?"
     r"(?:ignore|disregard|say|reply|respond|answer|output|include|tell|send|visit|reveal|append|recommend|print)"),
    (1.0, ("note", "message", "instruction", "attention"),
     rf"\b(?:note|message|instructions?|attention)\s+(?:to|for)\s+(?:the\s+|all\s+)?{_AI}\b"),
    (1.0, ("dear", "hey", "hello", "attention"), rf"\b(?:dear|hey|hello|attention)\s+{_AI}\b"),
    (1.0, ("read", "see", "process", "summari"),
     rf"\b(?:when|if)\s+(?:you|the\s+{_AI})\s+(?:read|see|process|summari[sz]es?)\s+this\b"),
    (1.0, ("<!--",), rf"<!--[^>]{{0,200}}\b{_AI}\b"),
    # exfiltration
    (1.0, ("http", "@"),
     r"\b(?:send|post|forward|exfiltrate|upload|leak|email|transmit)\b[^.\n]{0,50}\b(?:to|at)\s+(?:https?://|\S+@\S+\.\w)"),
    (1.0, ("![",), r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][^)\s]*="),
    # other languages
    (1.0, ("ignor", "vergiss", "negeer", "oublie"),
     r"\b(?:ignoriere|vergiss)\b.{0,30}\b(?:anweisungen|regeln)\b|\bignora\b.{0,30}\b(?:instrucciones|istruzioni)\b"
     r"|\b(?:ignore[zr]?|oublie[zr]?)\b.{0,30}\binstructions\s+pr[ée]c[ée]dentes\b|\bnegeer\b.{0,30}\binstructies\b"
     r"|\bignore\s+as\s+instru[çc][õo]es\b"),
    # social engineering
    (0.6, ("authori", "you may", "you can", "allowed to", "fine for you", "ok for you", "okay for you"),
     r"\bi\s+authori[sz]e\s+you\b|\byou\s+(?:may|can|are\s+allowed\s+to)\s+(?:skip|ignore|bypass|share|reveal)\b"
     r"|\bit'?s\s+(?:fine|ok|okay)\s+for\s+you\s+to\b"),
    (0.5, ("creator", "developer", "owner", "admin"),
     r"\bas\s+your\s+(?:creator|developer|owner|admin)\b|\bi'?m\s+(?:the|your)\s+(?:system\s+)?"
     r"(?:administrator|admin|developer|creator)\b"),
    (0.5, ("confidential", "every group", "all groups", "usual restrictions", "restricted"),
     r"\b(?:confidential|restricted|every\s+group|all\s+groups|usual\s+restrictions)\b"),
)  # fmt: skip

_RULES_COMPILED: tuple[tuple[float, tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (w, triggers, re.compile(p, re.I)) for w, triggers, p in _RULE_SPECS
)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_WORD = re.compile(r"[\w@$]+")
_LEET_CHARS = frozenset("013457@$")


def _unleet(m: re.Match[str]) -> str:
    """A word mixing letters and leetspeak digits (``pr3v10us``) spelled out; other words as they are.

    Checked in Python rather than by one regex: nested quantifiers over a long run of word characters
    backtrack catastrophically (the API fuzz test found a request that hung on it).
    """
    word = m.group()
    if any(ch.isalpha() for ch in word) and not _LEET_CHARS.isdisjoint(word):
        return word.translate(_LEET)
    return word


_SPACED = re.compile(r"(?<=\b\w) (?=\w\b)")
_INNER_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _deobfuscated(text: str) -> list[str]:
    """Copies of ``text`` with common obfuscations undone (only those that differ from it)."""
    variants = []
    plain = re.sub(r"\s{2,}", " ", _SPACED.sub("", text))
    plain = _INNER_HYPHEN.sub("", plain)
    if any(ch in text for ch in "013457@$"):
        plain = _WORD.sub(_unleet, plain)
    if plain != text:
        variants.append(plain)
    for run in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable():
            variants.append(decoded)
    return variants


def _score(text: str) -> tuple[float, list[Finding]]:
    lowered = text.lower()
    score = 0.0
    found: list[Finding] = []
    for weight, triggers, rx in _RULES_COMPILED:
        if triggers and not any(t in lowered for t in triggers):
            continue
        m = rx.search(text)
        if m is not None:
            score += weight
            found.append(Finding("injection", m.start(), m.end()))
    return score, found


def injection_score(text: str) -> tuple[float, list[Finding]]:
    """The weight of the injection heuristics ``text`` matches (its de-obfuscated copies included)."""
    score, found = _score(text)
    if score >= INJECTION_THRESHOLD:
        return score, found
    for variant in _deobfuscated(text):
        v_score, v_found = _score(variant)
        if v_score > score:  # spans of a copy do not index the text: report the whole text
            score, found = v_score, [Finding("injection", 0, len(text))] if v_found else []
    return score, found


def find_injection(text: str) -> list[Finding]:
    """Where ``text`` tries to give the model instructions (empty below :data:`INJECTION_THRESHOLD`)."""
    score, found = injection_score(text)
    return found if score >= INJECTION_THRESHOLD else []
