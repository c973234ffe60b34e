from __future__ import annotations

import pytest

from groundwork.errors import (
    ConfigError,
    ContextWindowError,
    DocumentParseError,
    ErrorCategory,
    GroundworkError,
    InputError,
    RateLimitError,
    Severity,
    UpstreamError,
)


def test_every_error_has_the_taxonomy_fields_and_a_unique_id() -> None:
    a, b = UpstreamError("boom", status_code=502), UpstreamError("boom")
    assert a.error_id != b.error_id and a.error_id.startswith("err_")
    body = a.to_dict()
    assert body["category"] == "upstream" and body["retryable"] is True
    assert body["id"] == a.error_id and body["type"] == "UpstreamError" and body["severity"] == "error"
    assert a.http_status == 503 and a.status_code == 502


@pytest.mark.parametrize(
    ("error", "category", "status", "retryable"),
    [
        (InputError("x"), ErrorCategory.INPUT, 400, False),
        (DocumentParseError("x"), ErrorCategory.INPUT, 400, False),
        (ConfigError("x"), ErrorCategory.CONFIG, 500, False),
        (RateLimitError("x", retry_after=3), ErrorCategory.RATE_LIMIT, 429, True),
        (ContextWindowError("x"), ErrorCategory.INPUT, 400, False),
    ],
)
def test_categories_map_to_http_status(
    error: GroundworkError, category: ErrorCategory, status: int, retryable: bool
) -> None:
    assert isinstance(error, GroundworkError)
    assert error.category == category
    assert error.http_status == status
    assert error.retryable is retryable


def test_instance_overrides_and_details() -> None:
    e = UpstreamError("bad request upstream", retryable=False, severity=Severity.CRITICAL, details={"a": 1})
    assert e.retryable is False and e.severity == Severity.CRITICAL
    assert e.to_dict()["details"] == {"a": 1}
    assert "upstream" in str(e) and e.error_id in str(e)


def test_the_tree_is_documented() -> None:
    import groundwork.errors as mod

    for name in ("GroundworkError", "ConfigError", "UpstreamError", "IngestionError", "RateLimitError"):
        assert name in (mod.__doc__ or "")
