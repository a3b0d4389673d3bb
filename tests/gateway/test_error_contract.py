"""The error contract (gateway/errors.py): one shape for every failure, every code documented,
and the API's error paths walked over HTTP, each answered in that shape."""

from __future__ import annotations

import re
import uuid

import pytest

from platform_core.gateway import errors
from tests.support.platform import REPO


def _error_types(cls: type[errors.GatewayError] = errors.GatewayError) -> list[type[errors.GatewayError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_error_types(sub))
    return found


def _documented_codes() -> dict[str, set[int]]:
    """README's error table: code → the statuses it is listed under."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| status | code | when |") : readme.index("## Configuration")]
    documented: dict[str, set[int]] = {}
    for row in table.splitlines()[2:]:
        if match := re.match(r"\| (\d{3})\b[^|]*\| ([^|]*) \|", row):
            for code in re.findall(r"`([a-z_]+)`", match[2]):
                documented.setdefault(code, set()).add(int(match[1]))
    return documented


def _assert_contract(body: dict, *, code: str) -> None:
    assert set(body["error"]) <= {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def test_every_error_type_answers_in_the_one_shape():
    for error_type in _error_types():
        error = error_type("why it failed")
        error.details = [{"path": "x", "message": "m"}]
        body = error.body(invocation_id="i-1")
        assert set(body) == {"error", "invocation_id"}
        _assert_contract(body, code=error_type.code)
        assert body["error"]["details"] == [{"path": "x", "message": "m"}]
        assert 400 <= error.http_status <= 599
        if error.retry_after is not None:
            assert error.headers["Retry-After"] == str(error.retry_after)


def test_every_error_code_is_in_the_readme_under_its_status():
    documented = _documented_codes()
    for error_type in _error_types():
        assert error_type.http_status in documented.get(error_type.code, set()), (
            f"{error_type.__name__}: {error_type.http_status} {error_type.code} is not in README's error table"
        )
    # The codes an error takes from its raiser rather than its class.
    assert {"unknown_invocation", "too_many_concurrent", "init_failed"} <= set(documented)


@pytest.fixture
def key():
    from platform_core.tenancy.services import api_key_create

    _, key = api_key_create(tenant_slug="tests", name="contract", is_staff=True)
    return key


# (method, path, body, authenticated, status, code): every error the API answers without a worker.
PATHS = [
    ("get", "/api/v1/plugins", None, False, 401, "unauthenticated"),
    ("post", "/api/v1/calculate/subtract", b'{"operand1": 1, "operand2": 2}', False, 401, "unauthenticated"),
    ("get", "/api/v1/no/such/endpoint", None, True, 404, "not_found"),
    ("get", "/api/v1/calculate/subtract", None, True, 405, "method_not_allowed"),
    ("post", "/api/v1/plugins", b"{}", True, 405, "method_not_allowed"),
    ("get", "/api/v1/plugins/no_such_plugin", None, True, 404, "unknown_plugin"),
    ("get", f"/api/v1/invocations/{uuid.UUID(int=0)}", None, True, 404, "unknown_invocation"),
    ("get", "/api/v1/invocations?status=bogus", None, True, 400, "invalid_parameter"),
    ("get", "/api/v1/invocations?page_size=100000", None, True, 400, "invalid_parameter"),
    ("post", "/api/v1/calculate/no_such_operation", b"{}", True, 404, "unknown_plugin"),
    ("post", "/api/v1/calculate/subtract", b"{not json", True, 400, "invalid_input"),
    ("post", "/api/v1/calculate/subtract", b'{"operand1": NaN, "operand2": 1}', True, 400, "invalid_input"),
    ("post", "/api/v1/calculate/subtract", b'{"operand1": 1}', True, 400, "invalid_input"),
    ("post", "/api/v1/plugins/subtract_numbers/invoke", b"[1, 2]", True, 400, "invalid_input"),
]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize(("method", "path", "body", "authenticated", "status", "code"), PATHS)
def test_it_answers_each_error_path_in_the_contract(client, key, method, path, body, authenticated, status, code):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if authenticated else {}
    if body is None:
        response = getattr(client, method)(path, **headers)
    else:
        response = getattr(client, method)(path, data=body, content_type="application/json", **headers)

    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    payload = response.json()
    _assert_contract(payload, code=code)
    if status == 405:
        assert response["Allow"]
    invocation_route = method == "post" and ("/calculate/" in path or path.endswith("/invoke"))
    # An authenticated invocation request is recorded, refusals included: its answer names it.
    assert ("invocation_id" in payload) == (invocation_route and authenticated), payload


async def _sent_by(handler) -> list[dict]:
    from platform_core.gateway.invoke_edge import _in_contract

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await _in_contract(handler, send, "/api/v1/invocations/x/cancel")
    return sent


async def test_it_answers_a_failure_of_an_edge_route_as_a_json_500():
    async def broken(send) -> None:
        raise RuntimeError("a bug")

    start, body = await _sent_by(broken)
    assert start["status"] == 500 and (b"content-type", b"application/json") in start["headers"]
    import json

    assert json.loads(body["body"])["error"] == {
        "code": "internal_error",
        "message": "internal error in the gateway: RuntimeError",
    }


async def test_it_sends_nothing_more_when_the_answer_had_started():
    async def half(send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("a bug mid-stream")

    assert [m["type"] for m in await _sent_by(half)] == ["http.response.start"]
