"""Strict JSON where documents come in, and documents every database can store."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_core.invocations.documents import NotJson, loads_strict, storable


@pytest.mark.parametrize(
    "text", ["NaN", "Infinity", "-Infinity", "1e309", "[1, -1e999]", '{"a": {"b": NaN}}', "1" * 5000]
)
def test_what_json_has_not_is_refused(text):
    with pytest.raises(NotJson):
        loads_strict(text)


def test_strict_json_parses_as_usual():
    assert loads_strict(b'{"a": [1, 2.5, -0.0, 1e308, "\\u00e9"]}') == {"a": [1, 2.5, -0.0, 1e308, "é"]}


def test_storable_keeps_what_needs_no_change_and_replaces_what_no_database_takes():
    plain = {"x": [1, "é", "😀"]}
    assert storable(plain) is plain
    assert storable({"a\x00": ["\x00", "\ud800", float("nan")]}) == {"a\ufffd": ["\ufffd", "\ufffd", None]}


@given(
    st.recursive(
        st.one_of(st.none(), st.floats(), st.text(), st.integers()),
        lambda i: st.lists(i) | st.dictionaries(st.text(), i),
    )
)
def test_anything_storable_is_strict_utf8_json(document):
    text = json.dumps(storable(document), ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    assert "\\u0000" not in text or "\\\\u0000" in text
