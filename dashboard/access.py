"""Every dashboard page needs a login."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse


def login_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """``login_required`` that, for async views, resolves ``request.user`` before the view runs, so
    that templates may use it (a lazy user would query the database inside the event loop)."""
    if not iscoroutinefunction(view):
        return login_required(view)

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = await request.auser()
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        request.user = user
        return await view(request, *args, **kwargs)

    return wrapper
