"""One error taxonomy for Groundwork, from the model call to the HTTP response.

Every failure a caller can see is a :class:`GroundworkError`. Library and vendor exceptions are
translated at the adapter edge with ``raise SomeGroundworkError(...) from exc``, so callers catch one
root and read the same fields everywhere: ``category``, ``severity``, ``retryable`` and a unique
``error_id`` that also appears in logs and traces.

The tree::

    GroundworkError
    ├── ConfigError                  (config)       a setting is missing or invalid; names the key
    ├── InputError                   (input)        the request or a file is malformed
    │   ├── UnsupportedFormatError   (input)        a file type no loader handles
    │   └── DocumentParseError       (input)        a file could not be parsed (corrupt PDF, ...)
    ├── NotFoundError                (not_found)    a collection, document or model does not exist
    ├── AuthError                    (auth)         missing or invalid credentials
    ├── PermissionDeniedError        (permission)   the caller may not do or see this
    ├── RateLimitError               (rate_limit)   too many requests or tokens; retryable
    ├── ModelError                   (model)        a model call failed
    │   ├── ModelNotAvailableError   (model)        a model package or server is missing
    │   ├── ModelTimeoutError        (timeout)      the call exceeded its deadline; retryable
    │   ├── UpstreamError            (upstream)     the provider answered 5xx or was unreachable; retryable
    │   ├── ContextWindowError       (input)        the prompt does not fit the model's window
    │   ├── ContentPolicyError       (input)        the provider refused the content (safety filter)
    │   ├── AllAttemptsFailedError   (upstream)     every deployment and fallback failed; lists each attempt
    │   └── StreamInterruptedError   (upstream)     a stream failed after tokens were sent; not retried
    ├── StorageError                 (storage)      the store failed or is inconsistent
    │   └── ServiceUnavailableError  (storage)      a server backend is unreachable or unfit; names the fix
    └── IngestionError               (ingestion)    a document could not be ingested (wraps the cause)
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, ClassVar


class ErrorCategory(StrEnum):
    """What kind of failure this is; decides the HTTP status and the metric label."""

    CONFIG = "config"
    INPUT = "input"
    NOT_FOUND = "not_found"
    AUTH = "auth"
    PERMISSION = "permission"
    RATE_LIMIT = "rate_limit"
    MODEL = "model"
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"
    STORAGE = "storage"
    INGESTION = "ingestion"
    INTERNAL = "internal"


class Severity(StrEnum):
    """How bad it is for the operator: ``info`` is a user mistake, ``critical`` needs a human now."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


_HTTP_STATUS: dict[ErrorCategory, int] = {
    ErrorCategory.CONFIG: 500,
    ErrorCategory.INPUT: 400,
    ErrorCategory.NOT_FOUND: 404,
    ErrorCategory.AUTH: 401,
    ErrorCategory.PERMISSION: 403,
    ErrorCategory.RATE_LIMIT: 429,
    ErrorCategory.MODEL: 502,
    ErrorCategory.TIMEOUT: 504,
    ErrorCategory.UPSTREAM: 503,
    ErrorCategory.STORAGE: 500,
    ErrorCategory.INGESTION: 422,
    ErrorCategory.INTERNAL: 500,
}


class GroundworkError(Exception):
    """Root of every error Groundwork raises on purpose.

    Subclasses set the class defaults; any instance may override them. ``error_id`` is unique per
    instance so a user can quote it and an operator can find it in logs and traces.
    """

    category: ClassVar[ErrorCategory] = ErrorCategory.INTERNAL
    severity: Severity = Severity.ERROR
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        severity: Severity | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if severity is not None:
            self.severity = severity
        if retryable is not None:
            self.retryable = retryable
        self.details: dict[str, Any] = dict(details or {})
        self.error_id = f"err_{uuid.uuid4().hex[:16]}"

    @property
    def http_status(self) -> int:
        """The HTTP status code this error maps to."""
        return _HTTP_STATUS[self.category]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the body of an error response, a log record's fields)."""
        return {
            "message": self.message,
            "type": type(self).__name__,
            "category": str(self.category),
            "code": str(self.category),
            "id": self.error_id,
            "severity": str(self.severity),
            "retryable": self.retryable,
            **({"details": self.details} if self.details else {}),
        }

    def __str__(self) -> str:
        return f"{self.message} [{self.category}, id={self.error_id}]"


class ConfigError(GroundworkError):
    """A setting is missing or invalid. The message names the key and how to fix it."""

    category = ErrorCategory.CONFIG
    severity = Severity.CRITICAL


class InputError(GroundworkError):
    """The caller sent something malformed: bad arguments, an unreadable file."""

    category = ErrorCategory.INPUT
    severity = Severity.INFO


class UnsupportedFormatError(InputError):
    """No loader handles this file type."""


class DocumentParseError(InputError):
    """A file has a supported type but could not be parsed (corrupt, encrypted, empty)."""


class NotFoundError(GroundworkError):
    """A named thing (collection, document, model) does not exist."""

    category = ErrorCategory.NOT_FOUND
    severity = Severity.INFO


class AuthError(GroundworkError):
    """Credentials are missing, invalid, revoked or expired."""

    category = ErrorCategory.AUTH
    severity = Severity.WARNING


class PermissionDeniedError(GroundworkError):
    """The caller is authenticated but may not do or see this."""

    category = ErrorCategory.PERMISSION
    severity = Severity.WARNING


class RateLimitError(GroundworkError):
    """Too many requests or tokens in the window. ``retry_after`` is in seconds when known."""

    category = ErrorCategory.RATE_LIMIT
    severity = Severity.WARNING
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ModelError(GroundworkError):
    """A model call failed."""

    category = ErrorCategory.MODEL


class ModelNotAvailableError(ModelError):
    """A model cannot be loaded or reached: a package is missing or a server is not configured."""

    severity = Severity.CRITICAL


class ModelTimeoutError(ModelError):
    """The model call exceeded its deadline."""

    category = ErrorCategory.TIMEOUT
    retryable = True


class UpstreamError(ModelError):
    """The provider answered with a server error or could not be reached."""

    category = ErrorCategory.UPSTREAM
    retryable = True

    def __init__(self, message: str, *, status_code: int | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.status_code = status_code


class ContextWindowError(ModelError):
    """The prompt does not fit the model's context window."""

    category = ErrorCategory.INPUT
    severity = Severity.WARNING


class ContentPolicyError(ModelError):
    """The provider's safety filter refused the prompt or the answer; retrying will not help."""

    category = ErrorCategory.INPUT
    severity = Severity.WARNING


class AllAttemptsFailedError(ModelError):
    """Every attempt of a request failed. ``attempts`` lists them: deployment, category, message, id.

    The category, status and retryability are those of the last attempt, so a client sees a 429 when
    every deployment was rate limited and a 503 when every one was down.
    """

    category = ErrorCategory.UPSTREAM

    def __init__(self, message: str, *, attempts: list[dict[str, Any]], last: GroundworkError) -> None:
        super().__init__(message, retryable=last.retryable, details={"attempts": attempts})
        self.attempts = attempts
        self.last = last
        self.retry_after = getattr(last, "retry_after", None)

    @property
    def http_status(self) -> int:
        return self.last.http_status


class StreamInterruptedError(ModelError):
    """A stream failed after tokens reached the client; it ends with this error, never silently."""

    category = ErrorCategory.UPSTREAM
    retryable = False


class StorageError(GroundworkError):
    """The store failed, or its files are inconsistent."""

    category = ErrorCategory.STORAGE
    severity = Severity.CRITICAL


class IngestionError(GroundworkError):
    """A document could not be ingested; the cause is chained. The store is left as it was."""

    category = ErrorCategory.INGESTION
    severity = Severity.WARNING


class PromptVariableError(InputError):
    """A prompt variable is missing, unexpected or breaks a rule of its schema; names both."""

    def __init__(self, message: str, *, variable: str, rule: str, **kwargs: Any) -> None:
        super().__init__(message, details={"variable": variable, "rule": rule}, **kwargs)
        self.variable = variable
        self.rule = rule
        self.param = f"variables.{variable}"
        """The request field an HTTP error body names."""


class JudgeOutputError(ModelError):
    """An LLM judge kept answering in a form that could not be read, even after repair and retries."""

    category = ErrorCategory.MODEL


class ServiceUnavailableError(StorageError):
    """A server backend (PostgreSQL, Redis) is unreachable or lacks what Groundwork needs.

    The message names the service, the address (without credentials) and the fix. Answered as 503
    (not the 500 of other storage errors): the request may succeed once the service is back.
    """

    retryable = True

    @property
    def http_status(self) -> int:
        return 503
