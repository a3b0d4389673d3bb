"""The ASGI edge that serves the invocation endpoints: limits and headers like the rest of the API."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.e2e


TWO_MB = b"{" + b" " * (2 * 1024 * 1024) + b"}"


def _count(api) -> int:
    return api.get("/api/v1/invocations", params={"page_size": 1}).json()["count"]


def test_oversized_body_is_413_json_and_recorded_with_an_invocation_id(api):
    response = api.post("/api/v1/calculate/subtract", content=TWO_MB, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    stored = api.get(f"/api/v1/invocations/{response.json()['invocation_id']}").json()
    assert (stored["status"], stored["http_status"], stored["arguments"]) == ("rejected", 413, None)
    assert stored["error"]["code"] == "request_too_large"


def test_an_anonymous_oversized_body_is_401_first_and_not_recorded(platform, api):
    before = _count(api)
    with httpx.Client(base_url=platform.url, timeout=60) as anonymous:
        response = anonymous.post(
            "/api/v1/calculate/subtract", content=TWO_MB, headers={"content-type": "application/json"}
        )
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    assert "invocation_id" not in response.json()
    assert _count(api) == before


def test_over_quota_is_429_with_retry_after_and_recorded_with_an_invocation_id(platform, api):
    platform.manage(
        "shell",
        "-c",
        "from platform_core.tenancy.models import Tenant; Tenant.objects.create(slug='tiny', rate_per_s=1e-3, burst=1)",
    )
    key = platform.create_api_key("tiny")
    with platform.client(api_key=key) as tiny:
        body = {"operand1": "not a number", "operand2": 1}  # refused by the schema: no worker needed
        first = tiny.post("/api/v1/calculate/subtract", json=body)
        second = tiny.post("/api/v1/calculate/subtract", json=body)
        assert first.status_code == 400
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert second.json()["error"]["code"] == "rate_limited"
        stored = tiny.get(f"/api/v1/invocations/{second.json()['invocation_id']}").json()
    assert (stored["status"], stored["http_status"], stored["tenant_id"]) == ("throttled", 429, "tiny")


def test_unknown_host_is_refused_as_json_and_not_recorded(api):
    before = _count(api)
    response = api.post(
        "/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}, headers={"host": "evil.example"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
    assert "invocation_id" not in response.json()
    assert _count(api) == before


def test_security_headers_and_request_id_are_kept(api):
    response = api.post(
        "/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}, headers={"x-request-id": "req-42"}
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    stored = api.get(f"/api/v1/invocations/{response.json()['invocation_id']}").json()
    assert stored["request_id"] == "req-42"


def _raw(platform, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as raw bytes on a socket of its own; (status, headers, body) of the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", platform.http_port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


HOST = b"Host: 127.0.0.1\r\nConnection: close\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /api/v1/\xff\xfe HTTP/1.1\r\n" + HOST + b"\r\n", 400, "bad_request"),
        (b"GET /api/v1/" + b"a" * 70_000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", 431, "headers_too_large"),
        (
            b"GET /api/v1/plugins HTTP/1.1\r\n" + HOST + b"Authorization: Bearer " + b"x" * 60_000 + b"\r\n\r\n",
            401,
            "unauthenticated",
        ),
        (b"GET /api/v1/plugins HTTP/1.1\r\n" + HOST + b"X-Thing: a\x01b\r\n\r\n", 400, "bad_request"),
        (b"HELLO THERE\r\n\r\n", 400, "bad_request"),
        (b"POST /api/v1/calculate/subtract HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n", 400, "bad_request"),
        (
            b"GET /api/v1/plugins HTTP/1.1\r\n" + HOST + b"".join(b"X-%d: y\r\n" % i for i in range(8000)) + b"\r\n",
            431,
            "headers_too_large",
        ),
    ],
    ids=["raw byte in path", "70k path", "60k auth header", "control char", "garbage", "bad length", "80k of headers"],
)
def test_what_the_server_refuses_itself_is_answered_as_json(platform, api, request_bytes, status, code):
    before = _count(api)
    answered, headers, body = _raw(platform, request_bytes)
    assert (answered, headers.get("content-type")) == (status, "application/json"), body[:200]
    assert json.loads(body)["error"]["code"] == code
    # Refused before the API key is read (by the HTTP server, or 401): nobody's, not recorded.
    assert "invocation_id" not in json.loads(body)
    assert _count(api) == before


def test_a_head_too_large_is_431_before_the_key_is_read_even_on_an_invocation_route(platform, api):
    """The HTTP server refuses it before the application runs: JSON, but no invocation (a changed
    promise: the early refusals that are recorded are the application's, 413 and 429)."""
    before = _count(api)
    request = (
        b"POST /api/v1/calculate/subtract HTTP/1.1\r\n"
        + HOST
        + b"Authorization: Bearer "
        + platform.api_key.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Padding: "
        + b"p" * 70_000
        + b"\r\n\r\n{}"
    )
    answered, headers, body = _raw(platform, request)
    assert (answered, headers.get("content-type")) == (431, "application/json"), body[:200]
    assert json.loads(body)["error"]["code"] == "headers_too_large" and "invocation_id" not in json.loads(body)
    assert _count(api) == before
