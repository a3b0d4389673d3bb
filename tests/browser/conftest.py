"""A real browser (Debian's Chromium, driven by Playwright) against the e2e platform."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM, chromium_launch, log_in

# DASHBOARD_SCREENSHOTS=1 saves the pages the tests visit to docs/screenshots/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}


# Module, not session: while it runs, Playwright's sync API holds an event loop in the main
# thread, which the async tests collected after the browser tests could not run beside.
@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        reason = "needs /usr/bin/chromium (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI must run the browser tests, but it {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = chromium_launch(playwright)
        yield browser
        browser.close()


class ConsoleWatch:
    """Console errors and uncaught exceptions of a page; a test ends with none."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))


@pytest.fixture(scope="session")
def dashboard_login(platform) -> tuple[str, str]:
    platform.create_user("operator", "operator-password", staff=True)
    return "operator", "operator-password"


@pytest.fixture
def open_page(browser, platform, dashboard_login) -> Iterator[Callable]:
    """``open_page(viewport=..., **context options)``: a logged-in page; no console errors at the end."""
    opened = []

    def open_one(*, viewport: dict | None = None, **options):
        context = browser.new_context(viewport=viewport or DESKTOP, base_url=platform.url, **options)
        page = context.new_page()
        page.set_default_timeout(20_000)
        watch = page.console_watch = ConsoleWatch(page)
        log_in(page, *dashboard_login)  # every page needs a login: through the real form
        opened.append((context, watch))
        return page

    yield open_one
    for context, watch in opened:
        context.close()
        assert not watch.problems, watch.problems


@pytest.fixture
def page(open_page):
    return open_page()


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` keeps a picture of the page when DASHBOARD_SCREENSHOTS is set."""

    def take(page, name: str, *, full_page: bool = True) -> None:
        if os.environ.get("DASHBOARD_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    return take
