"""Tests wait for facts, not time: poll what the system records, with a deadline, then fail
naming what did not happen. One helper for threads (``wait_for``), one for event loops
(``wait_until``, which never blocks the loop it polls from)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


def wait_for(predicate: Callable[[], object], *, what: str, timeout_s: float = 10.0, every_s: float = 0.02) -> None:
    """Poll ``predicate`` until it is true, or fail naming ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(every_s)


async def wait_until(
    predicate: Callable[[], object | Awaitable[object]], *, what: str, timeout_s: float = 10.0, every_s: float = 0.01
) -> None:
    """``wait_for`` on an event loop: the loop runs the system under test between polls.
    ``predicate`` may be a coroutine function (a check that itself asks over the network)."""
    deadline = time.monotonic() + timeout_s
    while not await _holds(predicate):
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(every_s)


async def _holds(predicate: Callable[[], object | Awaitable[object]]) -> bool:
    result = predicate()
    return bool(await result if inspect.isawaitable(result) else result)
