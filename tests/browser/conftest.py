"""A real browser (Debian's Chromium, driven by Playwright) against the e2e platform."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# DASHBOARD_SCREENSHOTS=1 saves the pages the tests visit to docs/screenshots/.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


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
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
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
def page(browser, platform, dashboard_login) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=platform.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    watch = ConsoleWatch(page)
    # Every dashboard page needs a login: through the real login form, as a person would.
    page.goto("/accounts/login/")
    page.fill("input[name=username]", dashboard_login[0])
    page.fill("input[name=password]", dashboard_login[1])
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    yield page
    context.close()
    assert not watch.problems, watch.problems


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` keeps a picture of the page when DASHBOARD_SCREENSHOTS is set."""

    def take(page, name: str, *, full_page: bool = True) -> None:
        if os.environ.get("DASHBOARD_SCREENSHOTS"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    return take
