"""What every dashboard page knows: the trace vocabulary (for the browser) and who is looking."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.http import HttpRequest

from platform_core.invocations.vocabulary import browser_vocabulary


@cache
def _vocabulary() -> dict[str, Any]:
    return browser_vocabulary()


def dashboard(request: HttpRequest) -> dict[str, Any]:
    """``trace_vocabulary`` (rendered with ``json_script`` into every page: the JavaScript holds no
    copy of phases or event kinds) and ``viewer`` (set by ``access.login_page``; None on the
    login page)."""
    return {"trace_vocabulary": _vocabulary(), "viewer": getattr(request, "viewer", None)}
