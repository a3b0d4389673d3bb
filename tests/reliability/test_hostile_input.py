"""Hostile request bodies against a real platform: whatever a client sends, it gets a JSON answer
that is not a 500, and the invocation it names is recorded and readable.

Classes of input: numbers JSON does not have (NaN, Infinity, 1e309) in any field, on every
invocation route, even where the schema would reject the input anyway; strings no database
column takes (NUL, unpaired surrogates); and arbitrary bytes and JSON-ish text (Hypothesis).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from platform_core.invocations.documents import storable

pytestmark = pytest.mark.e2e

NOT_JSON_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"]
ROUTES = ["/api/v1/calculate/subtract", "/api/v1/plugins/subtract_numbers/invoke", "/api/v1/plugins/slow_count/invoke"]


def _stored(rapi, answer) -> dict:
    invocation_id = answer.json()["invocation_id"]
    stored = rapi.get(f"/api/v1/invocations/{invocation_id}")
    assert stored.status_code == 200, stored.text
    return stored.json()


@pytest.mark.parametrize("token", NOT_JSON_NUMBERS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("template", ['{"operand1": %s, "operand2": 1}', '{"operand2": 1, "extra": [1, {"x": %s}]}'])
def test_numbers_json_does_not_have_are_400_recorded_and_start_no_worker(rapi, route, token, template):
    answer = rapi.post(route, content=(template % token).encode(), headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "invalid_input"
    stored = _stored(rapi, answer)
    assert (stored["status"], stored["http_status"], stored["worker_id"]) == ("rejected", 400, "")
    kinds = [event["kind"] for event in stored["trace"]]
    assert "allocate_request" not in kinds and kinds[-1] == "response"


@pytest.mark.parametrize(
    "text", ["nul \u0000 in the middle", "\ud800 alone", "pair \ud83d\ude00 fine", "\udfff\u0000"], ids=repr
)
def test_strings_no_database_takes_are_still_recorded(rapi, text):
    body = json.dumps({"operand1": 10, "operand2": 5, "note": text}).encode()
    answer = rapi.post(
        "/api/v1/plugins/subtract_numbers/invoke", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text  # subtract takes no "note": rejected, and stored as sent
    stored = _stored(rapi, answer)
    assert stored["status"] == "rejected"
    note = stored["arguments"]["note"]
    sent = json.loads(json.dumps(text))  # what the gateway parsed (a surrogate pair is one character)
    assert "\x00" not in note and note.encode("utf-8")  # storable: no NUL, no unpaired surrogate
    assert note == storable(sent)
    if "\x00" not in sent and "\ufffd" not in note:
        assert note == sent  # nothing changed that needed no change


# JSON-ish text: JSON values, with tokens JSON does not have spliced in, or raw bytes.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_documents = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
_json_ish = st.one_of(
    _documents.map(lambda d: json.dumps(d).encode()),
    st.builds(
        lambda d, token: json.dumps({"operand1": d, "operand2": 2}).replace("null", token, 1).encode(),
        _documents,
        st.sampled_from([*NOT_JSON_NUMBERS, "nan", "1" * 5000, '"\\ud800"', '"\\u0000"', "[" * 200]),
    ),
    st.binary(max_size=200),
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=_json_ish, route=st.sampled_from(ROUTES))
def test_any_body_gets_a_json_answer_that_is_no_500_and_is_recorded(rapi, body, route):
    answer = rapi.post(route, content=body, headers={"content-type": "application/json"})
    assert answer.status_code != 500 and answer.status_code < 600, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["invocation_id"]
    _stored(rapi, answer)
