"""Every dashboard page needs a login; the page knows its viewer (the user's tenant view)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

from platform_core.tenancy.services import viewer_for


def login_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``login_required``, and sets ``request.viewer`` (``tenancy.services.Viewer``) before the
    view runs. For async views the user is resolved first, so that templates may use it (a lazy
    user would query the database inside the event loop)."""
    if not iscoroutinefunction(view):

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            viewer = viewer_for(request.user)
            if viewer is None:
                return redirect_to_login(request.get_full_path())
            request.viewer = viewer  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    @functools.wraps(view)
    async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = await request.auser()
        viewer = await sync_to_async(viewer_for)(user)
        if viewer is None:
            return redirect_to_login(request.get_full_path())
        request.user, request.viewer = user, viewer  # type: ignore[attr-defined]
        return await view(request, *args, **kwargs)

    return async_wrapper
