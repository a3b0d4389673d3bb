"""The JSON documents an invocation carries (arguments, results): what is accepted, what is stored.

Strict JSON only (RFC 8259): ``NaN``, ``Infinity`` and numbers too large for a double
(``1e309``) are not JSON, so they are refused where documents come in, from clients and
plugins alike, rather than answered or stored as something no other JSON reader accepts.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


class NotJson(ValueError):
    """The bytes are not one strict JSON document."""


def _refuse_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(f"the number {text[:40]} is out of range (larger than a 64-bit float)")
    return value


def loads_strict(data: bytes | str) -> Any:
    """Parse one JSON document; ``NotJson`` (a ValueError) for anything that is not strict JSON.

    RecursionError passes through (a document nested deeper than the parser's recursion limit).
    """
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NotJson:
        raise
    except (UnicodeDecodeError, ValueError) as exc:  # includes ints longer than Python parses
        raise NotJson(str(exc)) from None


def storable(document: Any) -> Any:
    """``document`` as every supported database can store it in a JSON column.

    What a client or a plugin sends is stored as it was, except what no database takes: NUL
    characters (PostgreSQL's jsonb refuses them) and unpaired surrogates become U+FFFD, and
    non-finite numbers (refused where documents come in; this is the last line) become null.
    The fast path is one ``json.dumps``: most documents have none of these.
    """
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return _scrubbed(document)
    return _scrubbed(document) if "\\u0000" in text else document


# NUL, and surrogates (a str holds them only unpaired: the parser joins escaped pairs).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_scrubbed(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value
