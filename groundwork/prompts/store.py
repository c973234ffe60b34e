"""The storage seam of the prompt registry: :class:`PromptStore`, and its values.

A store keeps immutable versions (numbered 1, 2, ... per prompt name) and labels that point at
versions, with every label move recorded. Policy (what ``latest`` means, rollback, diff, seeding)
lives in :class:`~groundwork.prompts.registry.PromptRegistry`, so a backend only stores. Every backend's
tests inherit :class:`groundwork.testing.prompt_store.PromptStoreConformance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from groundwork.prompts.template import PromptTemplate


@dataclass(frozen=True)
class PromptVersion:
    """One immutable version of a prompt."""

    name: str
    version: int
    template: PromptTemplate
    content_hash: str
    author: str
    message: str
    created_at: float

    @property
    def ref(self) -> str:
        """``name@version``: how answers and traces name the prompt they used."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "template": self.template.to_dict(),
            "variables": list(self.template.variable_names),
            "content_hash": self.content_hash,
            "author": self.author,
            "message": self.message,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A label was set to ``version`` (from ``previous``, ``None`` when it is new)."""

    name: str
    label: str
    version: int
    previous: int | None
    actor: str
    reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "version": self.version,
            "previous": self.previous,
            "actor": self.actor,
            "reason": self.reason,
            "at": self.at,
        }


class PromptStore(Protocol):
    """Where prompt versions and labels are kept. Versions are never changed or deleted."""

    def append(
        self, name: str, template: PromptTemplate, author: str, message: str, at: float
    ) -> PromptVersion:
        """Store ``template`` as the next version of ``name`` (1 for a new name), atomically."""
        ...

    def get(self, name: str, version: int) -> PromptVersion | None:
        """One version, or ``None``."""
        ...

    def versions(self, name: str) -> Sequence[PromptVersion]:
        """Every version of ``name``, oldest first (empty for an unknown name)."""
        ...

    def names(self) -> Sequence[str]:
        """Every prompt name, sorted."""
        ...

    def set_label(
        self, name: str, label: str, version: int, actor: str, reason: str, at: float
    ) -> LabelEvent:
        """Point ``label`` of ``name`` at ``version`` (which must exist) and record the move."""
        ...

    def labels(self, name: str) -> dict[str, int]:
        """Label -> version of ``name``."""
        ...

    def label_events(self, name: str, label: str | None = None) -> Sequence[LabelEvent]:
        """The label moves of ``name`` (of one label, if given), oldest first."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...
