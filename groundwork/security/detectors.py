"""Detectors for the guards: PII with checksums, secrets, prompt leaks. Pure functions.

Prompt injection heuristics are in :mod:`groundwork.security.injection` (re-exported here).

Each detector returns :class:`Finding`\\ s (kind and character span) so a policy can block, redact or
log. Card numbers must pass the Luhn check and IBANs the ISO 7064 mod-97 check, which keeps order ids
and other long numbers from being taken for PII.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from groundwork.security.findings import Finding


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """Country length and ISO 7064 mod-97 check of an IBAN (spaces removed, upper case)."""
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _ssn_ok(text: str) -> bool:
    area, group, serial = text[:3], text[4:6], text[7:]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b")
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){0,5}[ .-]?\d{1,8}(?!\w)"  # international: +CC groups
    r"|(?<![\w+])\(?\d{2,5}\)?[ .-]\d{2,4}(?:[ .-]\d{2,4}){1,3}(?!\w)"  # national, with separators
)
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")
_NINO = re.compile(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")


def find_pii(text: str) -> list[Finding]:
    """Emails, phone numbers, card numbers (Luhn), IBANs (mod 97) and national ids (US SSN, UK NINO)."""
    found: list[Finding] = []
    if "@" in text:
        found += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
    if len(_DIGIT.findall(text)) < 6:  # every other kind has at least 6 digits
        return found
    for m in _IBAN.finditer(text):
        if iban_ok(m.group().replace(" ", "")):
            found.append(Finding("iban", m.start(), m.end()))
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(Finding("card", m.start(), m.end()))
    found += [Finding("national_id", m.start(), m.end()) for m in _SSN.finditer(text) if _ssn_ok(m.group())]
    found += [Finding("national_id", m.start(), m.end()) for m in _NINO.finditer(text)]
    for m in _PHONE.finditer(text):
        n_digits = sum(ch.isdigit() for ch in m.group())
        plausible = 9 <= n_digits <= 15 and not _looks_like_date(m.group())
        if plausible and not _overlaps(found, m.start(), m.end()):
            found.append(Finding("phone", m.start(), m.end()))
    return _merge(found)


def _looks_like_date(s: str) -> bool:
    return re.fullmatch(r"\d{4}[-.]\d{2}[-.]\d{2}|\d{2}[-.]\d{2}[-.]\d{4}", s.strip()) is not None


_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        (
            "private_key",
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z]+ )?PRIVATE KEY-----|$)",
        ),
        ("aws_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{40,255}\b"),
        ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),
        ("stripe_key", r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
        ("google_key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("groundwork_key", r"\bgw_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}"),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        (
            "password_assignment",
            r"(?i)\b(?:password|passwd|secret|api[_-]?key|access[_-]?token)\s*[:=]\s*['\"]?[^\s'\"]{8,}",
        ),
    )
)


_SECRET_TRIGGERS = {
    "private_key": ("PRIVATE KEY",),
    "aws_key": ("AKIA", "ASIA"),
    "github_token": ("gh", "github_pat_"),
    "openai_key": ("sk-",),
    "stripe_key": ("k_live_", "k_test_"),
    "slack_token": ("xox",),
    "google_key": ("AIza",),
    "groundwork_key": ("gw_",),
    "jwt": ("eyJ",),
}
"""Substrings without which a secret pattern cannot match: the regex is skipped (case-sensitive)."""


def find_secrets(text: str) -> list[Finding]:
    """API keys and tokens of common providers, private keys, JWTs and ``password = ...`` assignments."""
    found = []
    for kind, rx in _SECRETS:
        triggers = _SECRET_TRIGGERS.get(kind)
        if triggers is not None and not any(t in text for t in triggers):
            continue
        found += [Finding(kind, m.start(), m.end()) for m in rx.finditer(text)]
    return _merge(found)


def _overlaps(found: list[Finding], start: int, end: int) -> bool:
    return any(f.start < end and start < f.end for f in found)


def _merge(found: list[Finding]) -> list[Finding]:
    """Sorted, without findings inside an earlier (longer) one."""
    out: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -(f.end - f.start))):
        if not out or f.start >= out[-1].end:
            out.append(f)
    return out


def redact(text: str, findings: list[Finding], label: Callable[[Finding], str] | None = None) -> str:
    """``text`` with each finding replaced by ``[REDACTED_<KIND>]``."""
    name = label or (lambda f: f"[REDACTED_{f.kind.upper()}]")
    parts: list[str] = []
    pos = 0
    for f in _merge(findings):
        parts.append(text[pos : f.start])
        parts.append(name(f))
        pos = f.end
    parts.append(text[pos:])
    return "".join(parts)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def leaks_prompt(output: str, prompt: str, n: int = 8) -> bool:
    """Whether ``output`` repeats ``n`` consecutive words of ``prompt`` (a system prompt leak)."""
    grams = _ngrams(prompt, n)
    return bool(grams) and not grams.isdisjoint(_ngrams(output, n))


from groundwork.security.injection import find_injection, injection_score  # noqa: E402

__all__ = [
    "Finding",
    "find_injection",
    "find_pii",
    "find_secrets",
    "iban_ok",
    "injection_score",
    "leaks_prompt",
    "luhn_ok",
    "redact",
]
