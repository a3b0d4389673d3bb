"""Database reads outside Django's request cycle.

Django replaces a failed connection at the start and end of every request it handles
(``close_old_connections`` on its request signals). The invocation edge
(``gateway/invoke_edge.py``) answers without Django's handler, so its reads run on asgiref's
one shared sync thread, whose connection nothing would ever replace: once the database dropped
it (a PostgreSQL restart or failover, an idle timeout), every read there would fail until the
process restarts. Reads on that path are wrapped in ``reconnecting``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import InterfaceError, OperationalError, connection

P = ParamSpec("P")
T = TypeVar("T")


def reconnecting(function: Callable[P, T]) -> Callable[P, T]:
    """Run a read; if it failed because the connection is dead, once more on a new one."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except (OperationalError, InterfaceError):
            # A transaction cannot go on elsewhere; a live connection (e.g. a lock timeout)
            # would fail the same way again.
            if connection.in_atomic_block or connection.is_usable():
                raise
            connection.close()  # with a pool: handed back, and the pool discards it
            return function(*args, **kwargs)

    return wrapper
