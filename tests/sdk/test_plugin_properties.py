"""Property tests of the SDK's argument handling: whatever bytes arrive, a plugin answers with a
result or a ``PluginError``, never another exception."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ppp_sdk import Plugin, PluginError
from ppp_sdk.plugin import InvocationContext, require_number

echo = Plugin(primitive="echo")
echo.handler(lambda args, ctx: args)

subtract = Plugin(primitive="subtract")
subtract.handler(lambda args, ctx: {"result": require_number(args, "a") - require_number(args, "b")})

CTX = InvocationContext(context=None, emit=lambda kind, payload: None)  # type: ignore[arg-type]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(plugin: Plugin, data: bytes) -> bytes | PluginError:
    try:
        return plugin.run(data, CTX)
    except PluginError as exc:
        return exc


@FAST
@given(st.binary(max_size=2048))
def test_any_bytes_give_a_result_or_a_plugin_error(data):
    result = outcome(echo, data)
    assert isinstance(result, bytes | PluginError)
    if isinstance(result, bytes):
        assert json.loads(result) == json.loads(data or b"{}")


@FAST
@given(JSON)
def test_any_json_document_gives_a_result_or_a_plugin_error(document):
    for plugin in (echo, subtract):
        result = outcome(plugin, json.dumps(document).encode())
        assert isinstance(result, bytes | PluginError)
        if isinstance(result, PluginError):
            assert result.code in {"invalid_input", "invalid_output"}


@FAST
@given(st.integers(min_value=1, max_value=200_000), st.sampled_from([b"[", b'{"a":']))
def test_nesting_of_any_depth_is_handled(depth, opener):
    closer = b"]" if opener == b"[" else b"}"
    result = outcome(echo, opener * depth + b"1" + closer * depth)
    assert isinstance(result, bytes | PluginError)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_are_finite_or_refused(a, b):
    result = outcome(subtract, json.dumps({"a": a, "b": b}).encode())
    if isinstance(result, PluginError):  # not finite in, or not finite out (1e308 - -1e308)
        assert result.code in {"invalid_input", "invalid_output"}
    else:
        assert json.loads(result)["result"] == a - b
