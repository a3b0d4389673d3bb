from __future__ import annotations

import json
import re
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@register.filter
def to_json(value: Any) -> str:
    """Compact JSON, for a ``data-`` attribute (escaped there like any attribute value)."""
    return json.dumps(value, separators=(",", ":"))


@register.filter
def seconds_or_ms(value: float | int | None) -> str:
    """4000 → "4 s", 500 → "500 ms", 5600 → "5.6 s"."""
    if value is None:
        return ""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


_CODE = re.compile(r"`([^`]+)`")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")


@register.filter
def inline_markup(text: str) -> SafeString:
    """A plugin description's inline markup: `code` and **strong** (the text escaped first)."""
    html = _CODE.sub(r"<code>\1</code>", escape(text or ""))
    return mark_safe(_STRONG.sub(r"<strong>\1</strong>", html))
