"""Request bodies of the OpenAI-compatible routes, validated with pydantic.

Unknown OpenAI fields (``top_p``, ``user``, ``seed``, ...) are accepted and ignored (``extra="allow"``);
the fields Groundwork acts on are validated, so a wrong role or type is a 400 naming the field. Bodies
are parsed with :meth:`~pydantic.BaseModel.model_validate_json` (pydantic's JSON parser, one pass), and
their schemas are published in the OpenAPI document by :func:`openapi_components`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from groundwork.api.errors import validation_error
from groundwork.rag.retrieval import Filters
from groundwork.types import GenerationOptions, Message

DEFAULT_OPTIONS = GenerationOptions()


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(BaseModel):
    """A text part of a message's content (the list form of ``content``)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of a chat request."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    @field_validator("content", mode="before")
    @classmethod
    def _text_or_parts(cls, value: object) -> object:
        if not isinstance(value, str | list):
            raise ValueError("content must be a string or a list of text parts")
        return value

    def to_message(self) -> Message:
        content = self.content
        if not isinstance(content, str):
            content = "".join(part.text for part in content)
        return Message(self.role, content)


class StreamOptions(BaseModel):
    """``stream_options`` of a chat request."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(_Body):
    """``POST /v1/chat/completions``."""

    model: str = Field(min_length=1, description="A model group (see GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, description="Only 1 is supported.")

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _str_or_list(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | list):
            raise ValueError("stop must be a string or a list of strings")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def chat_messages(self) -> list[Message]:
        """The messages as :class:`~groundwork.types.Message` values."""
        return [m.to_message() for m in self.messages]

    def options(self) -> GenerationOptions:
        """The generation options; unset fields take :class:`GenerationOptions` defaults."""
        max_tokens = self.max_completion_tokens or self.max_tokens
        if max_tokens is None and self.temperature is None and not self.stop:
            return DEFAULT_OPTIONS
        stop = self.stop
        return GenerationOptions(
            max_tokens=max_tokens or DEFAULT_OPTIONS.max_tokens,
            temperature=DEFAULT_OPTIONS.temperature if self.temperature is None else self.temperature,
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        )

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class EmbeddingRequest(_Body):
    """``POST /v1/embeddings``."""

    model: str = Field(default="", description="Accepted for compatibility; the configured embedder answers.")
    input: str | list[str] = Field(description="A text or up to 2048 texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: object) -> object:
        if not isinstance(value, str | list):
            raise ValueError("input must be a string or a list of strings (token arrays are not supported)")
        return value

    @field_validator("input")
    @classmethod
    def _some_texts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not 1 <= len(value) <= 2048:
            raise ValueError("give between 1 and 2048 texts")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


# -- Groundwork's own routes (RAG): per-call options, so unknown fields are rejected -------------------

MAX_QUESTION_CHARS = 4000
"""The longest question (or retrieval query) accepted, in characters."""

COLLECTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A collection name: 1-64 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or digit."""

COLLECTION_RULE = (
    "a collection name is 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
)


def check_collection(name: str) -> str:
    """``name`` when it is a valid collection name; ``ValueError`` saying the rule otherwise."""
    if COLLECTION_NAME.fullmatch(name) is None:
        raise ValueError(f"{name[:80]!r} is not a valid collection name: {COLLECTION_RULE}")
    return name


Collection = Annotated[
    str, AfterValidator(check_collection), Field(description=COLLECTION_RULE, examples=["default"])
]
TopK = Annotated[
    int | None, Field(ge=1, le=100, description="Chunks to retrieve (default: retrieval.top_k).")
]
Query = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterOptions(_Options):
    """Metadata filters, applied inside both searches (before ranking)."""

    path_prefix: str | None = Field(
        default=None, max_length=4096, description="Source path starts with this."
    )
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, description="Documents carrying any of these tags."
    )
    modified_after: float | None = Field(default=None, description="Source modified at or after (epoch s).")
    modified_before: float | None = Field(default=None, description="Source modified before (epoch s).")

    def to_filters(self) -> Filters:
        return Filters(
            path_prefix=self.path_prefix,
            tags=tuple(self.tags) if self.tags is not None else None,
            modified_after=self.modified_after,
            modified_before=self.modified_before,
        )


class RagOptions(_Options):
    """The ``rag`` extra field of ``POST /v1/chat/completions``: answer the last user message."""

    collection: Collection = "default"
    top_k: TopK = None
    filters: FilterOptions | None = None


class AnswerRequest(_Options):
    """``POST /v1/answers``: a grounded, cited answer (``stream: true`` for server-sent events)."""

    question: Annotated[Query, AfterValidator(_not_blank)]
    collection: Collection = "default"
    top_k: TopK = None
    stream: bool = False
    filters: FilterOptions | None = None


class RetrieveRequest(_Options):
    """``POST /v1/retrieve``: the best chunks for a query, with their scores."""

    query: Annotated[Query, AfterValidator(_not_blank)]
    collection: Collection = "default"
    top_k: TopK = None
    filters: FilterOptions | None = None


class TextDocument(_Options):
    """One text document of a JSON upload. ``name`` picks the loader by suffix (none: ``.txt``)."""

    name: str = Field(min_length=1, max_length=255, examples=["leave-policy.md"])
    text: Annotated[str, AfterValidator(_not_blank)]
    groups: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, description="Groups allowed to read the document (empty: admins only)."
    )


class DocumentsUpload(_Options):
    """``POST /v1/collections/{collection}/documents`` with a JSON body (text documents)."""

    documents: list[TextDocument] = Field(min_length=1, max_length=100)


_B = TypeVar("_B", bound=BaseModel)

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletionRequest,
    EmbeddingRequest,
    AnswerRequest,
    RetrieveRequest,
    DocumentsUpload,
    RagOptions,
)


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route whose handler parses ``model`` from the raw body itself."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def openapi_components() -> dict[str, Any]:
    """The JSON schemas of the request bodies, for ``components.schemas`` of the OpenAPI document."""
    schemas: dict[str, Any] = {}
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def parse_body(model: type[_B], body: bytes) -> _B:
    """Parse and validate a JSON body; a malformed one raises a 400 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False, include_input=False)) from None
