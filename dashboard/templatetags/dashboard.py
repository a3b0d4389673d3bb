from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@register.filter
def seconds_or_ms(value: float | int | None) -> str:
    """4000 → "4 s", 500 → "500 ms", 5600 → "5.6 s"."""
    if value is None:
        return ""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"
