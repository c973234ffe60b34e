"""Prompt templates: text or chat, typed variables, strict rendering.

Syntax: ``{{ name }}`` is a variable (letters, digits, ``_`` and ``.``; spaces inside the braces are
optional); ``\\{{`` writes a literal ``{{``. The template is parsed once into literal and variable
parts, and values are inserted in one pass, so a value that contains ``{{ other }}`` is inserted as
those characters and never interpreted (no template injection through user input).

Rendering is strict: a variable the template uses but the caller did not give (and that has no
default), or a value the template does not use, raises :class:`~groundwork.errors.PromptVariableError`
naming the variable; nothing is ever rendered as an empty string by accident.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from groundwork.errors import InputError, PromptVariableError
from groundwork.types import Message, Role

VarType = Literal["string", "integer", "number", "boolean"]
Kind = Literal["text", "chat"]

_TOKEN = re.compile(r"\\\{\{|\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}|\{\{")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,99}$")
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}

Rule = Callable[[object], str | None]
"""A custom validation rule: returns why a value is invalid, or ``None`` when it is fine."""


def _non_blank(value: object) -> str | None:
    return "must not be blank" if isinstance(value, str) and not value.strip() else None


def _single_line(value: object) -> str | None:
    return "must be a single line" if isinstance(value, str) and "\n" in value else None


def _no_template_syntax(value: object) -> str | None:
    return "must not contain '{{'" if isinstance(value, str) and "{{" in value else None


RULES: dict[str, Rule] = {
    "non_blank": _non_blank,
    "single_line": _single_line,
    "no_template_syntax": _no_template_syntax,
}
"""Named custom rules a variable schema can refer to (a stored version names its rules; it holds no
code). Register a rule by adding to this mapping before templates that use it are rendered."""


def check_prompt_name(name: str) -> str:
    """``name`` if it is a valid prompt name (lower-case letters, digits, ``_ . -``), else an error."""
    if not _NAME.match(name):
        raise InputError(
            f"invalid prompt name {name!r}: use 1-100 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """The schema of one variable: type, required/default, max length, regex, enum, custom rule.

    A variable with a ``default`` may be left out; ``required=False`` needs a default.
    """

    type: VarType = "string"
    required: bool = True
    default: object = None
    max_length: int | None = None
    pattern: str | None = None
    enum: tuple[object, ...] = ()
    rule: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        for key, kinds in (("max_length", int), ("pattern", str), ("rule", str), ("description", str)):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
                raise InputError(f"variable schema key {key!r} must be {kinds.__name__}, got {value!r}")
        if not isinstance(self.required, bool) or not isinstance(self.enum, tuple):
            raise InputError("variable schema: `required` must be true or false and `enum` a list")
        if self.max_length is not None and self.max_length < 1:
            raise InputError(f"variable schema: max_length must be at least 1, got {self.max_length}")
        if self.type not in _PY_TYPES:
            raise InputError(f"unknown variable type {self.type!r}; use one of {sorted(_PY_TYPES)}")
        if self.rule is not None and self.rule not in RULES:
            raise InputError(f"unknown validation rule {self.rule!r}; known rules: {sorted(RULES)}")
        if not self.required and self.default is None:
            raise InputError("an optional variable needs a default (it is never rendered as empty)")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise InputError(f"invalid regex {self.pattern!r}: {exc}") from exc

    def check(self, name: str, value: object) -> None:
        """Raise :class:`PromptVariableError` naming ``name`` and the rule ``value`` breaks."""

        def fail(rule: str, why: str) -> PromptVariableError:
            return PromptVariableError(f"variable {name!r} {why} (rule: {rule})", variable=name, rule=rule)

        ok_types = _PY_TYPES[self.type]
        if not isinstance(value, ok_types) or (self.type != "boolean" and isinstance(value, bool)):
            raise fail("type", f"must be {self.type}, got {type(value).__name__}")
        if self.max_length is not None and len(str(value)) > self.max_length:
            raise fail("max_length", f"is {len(str(value))} characters, more than {self.max_length}")
        if self.pattern is not None and not re.fullmatch(self.pattern, str(value)):
            raise fail("pattern", f"does not match the regex {self.pattern!r}")
        if self.enum and value not in self.enum:
            raise fail("enum", f"must be one of {list(self.enum)}, got {value!r}")
        if self.rule is not None:
            why = RULES[self.rule](value)
            if why is not None:
                raise fail(self.rule, why)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; only the keys that differ from the defaults."""
        out: dict[str, Any] = {"type": self.type, "required": self.required}
        for key in ("default", "max_length", "pattern", "rule"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.enum:
            out["enum"] = list(self.enum)
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VariableSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {"type", "required", "default", "max_length", "pattern", "enum", "rule", "description"}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown variable schema keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "enum" in values:
            values["enum"] = tuple(values["enum"])
        if "default" in values and "required" not in values:
            values["required"] = False
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Model settings stored with a prompt version (``None``: the caller's default)."""

    model_group: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise InputError(f"model temperature must be between 0 and 2, got {self.temperature}")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= 32_768:
            raise InputError(f"model max_tokens must be between 1 and 32768, got {self.max_tokens}")

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("model_group", self.model_group),
                ("temperature", self.temperature),
                ("max_tokens", self.max_tokens),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class _Part:
    literal: str
    variable: str | None = None


def _parse(source: str) -> tuple[_Part, ...]:
    parts: list[_Part] = []
    pos = 0
    for match in _TOKEN.finditer(source):
        literal = source[pos : match.start()]
        token = match.group(0)
        if token == "\\{{":
            parts.append(_Part(literal + "{{"))
        elif match.group(1) is None:
            line = source.count("\n", 0, match.start()) + 1
            raise InputError(
                f"template syntax error at line {line}: '{{{{' must open a variable like "
                "'{{ name }}' (write '\\{{' for literal braces)"
            )
        else:
            parts.append(_Part(literal, match.group(1)))
        pos = match.end()
    parts.append(_Part(source[pos:]))
    return tuple(parts)


def _fill(parts: tuple[_Part, ...], values: Mapping[str, str]) -> str:
    return "".join(p.literal + (values[p.variable] if p.variable is not None else "") for p in parts)


@dataclass(frozen=True)
class PromptTemplate:
    """A text template (``text``) or a chat template (``messages``: role and content templates).

    ``variables`` is the schema; a variable the template uses without a schema entry is a required
    string. A schema entry the template never uses is an error (a typo would go unnoticed).
    """

    kind: Kind = "text"
    text: str = ""
    messages: tuple[tuple[Role, str], ...] = ()
    variables: Mapping[str, VariableSpec] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not all(
            isinstance(r, str) and isinstance(c, str) for r, c in self.messages
        ):
            raise InputError("template text and message contents must be strings")
        if self.kind == "text" and (self.messages or not self.text):
            raise InputError("a text template needs `text` (and no `messages`)")
        if self.kind == "chat" and (self.text or not self.messages):
            raise InputError("a chat template needs `messages` (and no `text`)")
        for role, _ in self.messages:
            if role not in ("system", "user", "assistant"):
                raise InputError(f"unknown message role {role!r}; use system, user or assistant")
        used = self.variable_names
        unused = set(self.variables) - set(used)
        if unused:
            raise InputError(f"variables {sorted(unused)} have a schema but the template does not use them")

    @property
    def sources(self) -> tuple[str, ...]:
        """The template strings (one for text, one per message for chat)."""
        return (self.text,) if self.kind == "text" else tuple(c for _, c in self.messages)

    @property
    def variable_names(self) -> tuple[str, ...]:
        """Variables the template uses, in order of first use (also checks the syntax)."""
        seen: dict[str, None] = {}
        for source in self.sources:
            for part in _parse(source):
                if part.variable is not None:
                    seen.setdefault(part.variable, None)
        return tuple(seen)

    def spec(self, name: str) -> VariableSpec:
        """The schema of variable ``name`` (a required string when the template gives none)."""
        return self.variables.get(name, VariableSpec())

    def _values(self, given: Mapping[str, object]) -> dict[str, str]:
        names = self.variable_names
        unexpected = sorted(set(given) - set(names))
        if unexpected:
            raise PromptVariableError(
                f"unexpected variable {unexpected[0]!r}: the template uses {list(names)}",
                variable=unexpected[0],
                rule="unexpected",
            )
        values: dict[str, str] = {}
        for name in names:
            spec = self.spec(name)
            if name in given and given[name] is not None:
                value = given[name]
            elif spec.default is not None:
                value = spec.default
            else:
                raise PromptVariableError(f"missing variable {name!r}", variable=name, rule="required")
            spec.check(name, value)
            values[name] = _stringify(value)
        return values

    def render_text(self, variables: Mapping[str, object]) -> str:
        """Render a text template (a chat template renders as ``role: content`` lines)."""
        values = self._values(variables)
        if self.kind == "text":
            return _fill(_parse(self.text), values)
        return "\n\n".join(f"{r}: {_fill(_parse(c), values)}" for r, c in self.messages)

    def render_messages(self, variables: Mapping[str, object]) -> list[Message]:
        """Render to chat messages (a text template becomes one user message)."""
        values = self._values(variables)
        if self.kind == "text":
            return [Message("user", _fill(_parse(self.text), values))]
        return [Message(role, _fill(_parse(content), values)) for role, content in self.messages]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what is stored and hashed)."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "text":
            out["text"] = self.text
        else:
            out["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        out["variables"] = {k: v.to_dict() for k, v in sorted(self.variables.items())}
        out["model"] = self.model.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptTemplate:
        """Build from :meth:`to_dict`'s form (or a YAML file's); errors name the bad key."""
        known = {"kind", "text", "messages", "variables", "model"}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown template keys {sorted(unknown)}; known: {sorted(known)}")
        kind: Kind
        match data.get("kind") or ("chat" if "messages" in data else "text"):
            case "text":
                kind = "text"
            case "chat":
                kind = "chat"
            case other:
                raise InputError(f"unknown template kind {other!r}; use text or chat")
        if not isinstance(data.get("messages") or [], list) or not isinstance(
            data.get("variables") or {}, dict
        ):
            raise InputError("template `messages` must be a list and `variables` a mapping")
        try:
            messages = tuple((m["role"], m["content"]) for m in data.get("messages") or ())
            variables = {str(k): VariableSpec.from_dict(v) for k, v in (data.get("variables") or {}).items()}
            model = ModelConfig(**(data.get("model") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed template: {exc!r} (messages need role and content)") from exc
        return cls(
            kind=kind, text=data.get("text") or "", messages=messages, variables=variables, model=model
        )

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON form: equal templates have equal hashes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _stringify(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
