"""What a detector reports: a kind and a character span."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a detector found: its kind (``email``, ``card``, ``injection``, ...) and span."""

    kind: str
    start: int
    end: int
