"""The ASGI edge that serves the invocation endpoints: limits and headers like the rest of the API."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_oversized_body_is_413_json(api):
    response = api.post(
        "/api/v1/calculate/subtract",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_unknown_host_is_refused(api):
    response = api.post(
        "/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}, headers={"host": "evil.example"}
    )
    assert response.status_code == 400


def test_security_headers_and_request_id_are_kept(api):
    response = api.post(
        "/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}, headers={"x-request-id": "req-42"}
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    stored = api.get(f"/api/v1/invocations/{response.json()['invocation_id']}").json()
    assert stored["request_id"] == "req-42"
