"""The API fuzzed from its own OpenAPI document (schemathesis): no request makes the server answer 5xx.

Every operation in ``/openapi.json`` gets a few generated requests with an admin key (so they pass
authentication and reach the routes) and a few without one (401, never 500). Bounded to finish in well
under a minute on the fake models.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from groundwork.api import create_app
from tests.security_helpers import bearer, secure_container

_DATA = Path(tempfile.mkdtemp(prefix="gw-fuzz-"))
_CONTAINER = secure_container(_DATA / "data")
_ADMIN, _ = _CONTAINER.security.keys.create("fuzz", "admin")
_CONTAINER.ingestor.ingest_bytes(b"# Leave\n\nEmployees get 25 days of leave.", "leave.md", "default", ["hr"])
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_CONTAINER))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _CONTAINER.close()
    shutil.rmtree(_DATA, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_as_admin(case: schemathesis.Case) -> None:
    response = case.call(headers=bearer(_ADMIN))
    assert response.status_code < 500, (
        f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    )


@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_401_without_a_key(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code}"
    public = case.path in ("/healthz", "/readyz", "/metrics")
    assert public or response.status_code == 401
