"""The prompt registry: immutable versions, movable labels, history, diff and rollback.

A reference names a version three ways: a number (``3``), a label (``production``, ``staging`` or any
custom one) or ``latest`` (the newest version, a label no one can move). ``name@ref`` joins a prompt's
name and a reference (``rag.answer@production``); an :class:`~groundwork.rag.answer.Answer` records the
resolved form (``rag.answer@3``).

Rollback moves a label back to the version it pointed at before its last move (repeatable: two
rollbacks undo two moves), or to a version given explicitly.
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from groundwork.errors import InputError, NotFoundError
from groundwork.prompts.store import LabelEvent, PromptStore, PromptVersion
from groundwork.prompts.template import PromptTemplate, check_prompt_name
from groundwork.types import Message

LATEST = "latest"
PRODUCTION = "production"
ROLLBACK = "rollback"
"""The reason recorded for a label move made by :meth:`PromptRegistry.rollback` without a target."""

_LABEL = re.compile(r"^[a-z][a-z0-9_\-]{0,49}$")


def parse_ref(ref: str, default: str = PRODUCTION) -> tuple[str, str]:
    """Split ``name@ref`` into ``(name, ref)``; a bare name gets ``default``."""
    name, _, version = ref.partition("@")
    return check_prompt_name(name.strip()), (version.strip() or default)


@dataclass(frozen=True, slots=True)
class Seed:
    """A prompt the platform needs, created on first start with these labels."""

    name: str
    template: PromptTemplate
    labels: tuple[str, ...] = (PRODUCTION,)
    message: str = "seeded with the built-in text"


class PromptRegistry:
    """Versions and labels of prompts over a :class:`~groundwork.prompts.store.PromptStore`."""

    def __init__(self, store: PromptStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def create(
        self, name: str, template: PromptTemplate, author: str = "local", message: str = ""
    ) -> PromptVersion:
        """A new version of ``name``; when ``template`` equals the latest version, that version."""
        check_prompt_name(name)
        latest = self.latest(name)
        if latest is not None and latest.content_hash == template.content_hash:
            return latest
        return self.store.append(name, template, author, message, self.clock())

    def latest(self, name: str) -> PromptVersion | None:
        """The newest version of ``name``, or ``None``."""
        versions = self.store.versions(name)
        return versions[-1] if versions else None

    def names(self) -> Sequence[str]:
        """Every prompt name."""
        return self.store.names()

    def get(self, name: str, ref: str | int = LATEST) -> PromptVersion:
        """Version ``ref`` (number, label or ``latest``) of ``name``; NotFoundError names what is missing."""
        known = self.store.names()
        if name not in known:
            raise NotFoundError(f"no prompt named {name!r} (known: {', '.join(known) or 'none'})")
        if isinstance(ref, int) or str(ref).isdigit():
            number = int(ref)  # beyond a 64-bit column no version exists (and SQLite would overflow)
            found = self.store.get(name, number) if 0 < number < 2**63 else None
            if found is None:
                last = self.latest(name)
                raise NotFoundError(
                    f"prompt {name!r} has no version {ref} (latest is {last and last.version})"
                )
            return found
        if ref == LATEST:
            latest = self.latest(name)
            assert latest is not None
            return latest
        labels = self.store.labels(name)
        if ref not in labels:
            raise NotFoundError(
                f"prompt {name!r} has no label {ref!r} (labels: {', '.join(sorted(labels)) or 'none'})"
            )
        found = self.store.get(name, labels[ref])
        assert found is not None  # a label points at an existing version (foreign key)
        return found

    def resolve(self, ref: str, default: str = PRODUCTION) -> PromptVersion:
        """The version named by ``name@ref`` (a bare name means ``name@default``)."""
        name, version = parse_ref(ref, default)
        return self.get(name, version)

    def labels(self, name: str) -> dict[str, int]:
        """Label -> version of ``name`` (``latest`` included)."""
        latest = self.get(name, LATEST)
        return {**self.store.labels(name), LATEST: latest.version}

    def set_label(
        self, name: str, label: str, version: int | str, actor: str = "local", reason: str = ""
    ) -> LabelEvent:
        """Point ``label`` at ``version`` (a number or another label)."""
        if label == LATEST:
            raise InputError("'latest' always means the newest version; it cannot be moved")
        if not _LABEL.match(label):
            raise InputError(f"invalid label {label!r}: lower-case letters, digits, '_' or '-', up to 50")
        target = self.get(name, version)
        return self.store.set_label(name, label, target.version, actor, reason, self.clock())

    def rollback(self, name: str, label: str, to: int | None = None, actor: str = "local") -> LabelEvent:
        """Move ``label`` back: to ``to``, or to where it pointed before its last move."""
        if to is not None:
            return self.set_label(name, label, to, actor, f"rolled back to version {to}")
        stack: list[int] = []
        for event in self.store.label_events(name, label):
            if event.reason == ROLLBACK and stack:
                stack.pop()
            else:
                stack.append(event.version)
        if len(stack) < 2:
            raise InputError(f"label {label!r} of prompt {name!r} has no earlier version to roll back to")
        return self.store.set_label(name, label, stack[-2], actor, ROLLBACK, self.clock())

    def history(self, name: str) -> tuple[Sequence[PromptVersion], Sequence[LabelEvent]]:
        """Every version of ``name`` and every label move, oldest first."""
        self.get(name, LATEST)  # NotFoundError for an unknown name
        return self.store.versions(name), self.store.label_events(name)

    def diff(self, name: str, a: str | int, b: str | int) -> str:
        """A unified diff between two versions (template text, variable schema and model config)."""
        old, new = self.get(name, a), self.get(name, b)
        return "".join(
            difflib.unified_diff(
                _describe(old.template).splitlines(keepends=True),
                _describe(new.template).splitlines(keepends=True),
                fromfile=old.ref,
                tofile=new.ref,
            )
        )

    def render(
        self, name: str, ref: str | int, variables: Mapping[str, object]
    ) -> tuple[PromptVersion, list[Message]]:
        """Render version ``ref`` of ``name`` strictly, as chat messages."""
        version = self.get(name, ref)
        return version, version.template.render_messages(variables)

    def seed(self, seeds: Sequence[Seed], actor: str = "groundwork") -> list[PromptVersion]:
        """Create each seed's prompt (and labels) unless a prompt of that name exists. Returns those made."""
        made: list[PromptVersion] = []
        existing = set(self.store.names())
        for seed in seeds:
            if seed.name in existing:
                continue
            version = self.store.append(seed.name, seed.template, actor, seed.message, self.clock())
            for label in seed.labels:
                self.store.set_label(seed.name, label, version.version, actor, "seed", self.clock())
            made.append(version)
        return made

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def _describe(template: PromptTemplate) -> str:
    lines: list[str] = []
    if template.kind == "text":
        lines += ["text:", *template.text.splitlines()]
    for role, content in template.messages:
        lines += [f"{role}:", *(f"  {line}" for line in content.splitlines())]
    lines.append("variables:")
    for var, spec in sorted(template.variables.items()):
        lines.append(f"  {var}: {json.dumps(spec.to_dict(), sort_keys=True)}")
    lines.append(f"model: {json.dumps(template.model.to_dict(), sort_keys=True)}")
    return "\n".join(lines) + "\n"
