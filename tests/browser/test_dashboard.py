"""The dashboard in a real browser: run, watch live, replay, workers board, no console errors."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LIVE = "[data-socket-state][data-state=open]"


def _arrows(page, scope: str = "") -> int:
    return int(page.get_attribute(f"{scope} .sequence-diagram".strip(), "data-arrows") or 0)


def test_calculator_runs_in_place_and_draws_the_sequence_diagram(page, screenshot):
    page.goto("/")
    page.wait_for_selector(LIVE)
    page.select_option("#field-operation", "subtract")
    page.fill("#field-operand1", "10")
    page.fill("#field-operand2", "4")
    url = page.url
    page.click("#calculator button[type=submit]")
    result = page.wait_for_selector("[data-testid=result]")
    assert '"result": 6.0' in result.inner_text()
    assert page.url == url  # in place, no reload
    page.wait_for_selector("[data-testid=live-status]:text('succeeded')")
    page.wait_for_function("() => Number(document.querySelector('.sequence-diagram').dataset.arrows) >= 30")
    rows = page.locator("#live-events > li").count()
    assert _arrows(page) == rows
    svg = page.inner_html(".sequence-diagram")
    for participant in ("Client", "Gateway", "Plugin Registry", "Runtime Client", "Supervisor", "backend", "worker-2"):
        assert participant in svg, participant
    assert "5. PLUGIN EXECUTION" in svg and "Progress(50%" in svg
    screenshot(page, "calculator")


def test_a_bad_operand_shows_the_apis_message_next_to_the_field(page):
    page.goto("/")
    page.wait_for_selector(LIVE)
    page.fill("#field-operand2", "")
    page.click("#calculator button[type=submit]")
    error = page.wait_for_selector("#field-operand2-error")
    assert error.inner_text() == "'operand2' is a required property"
    assert "invalid_input" in page.inner_text("#run-result")


# Records, in the page, each value the progress bar and the diagram's arrow count take.
RECORD = """() => {
  const seen = (window.seen = { percents: [], arrows: [] });
  const note = () => {
    const percent = document.querySelector("#live-progress").getAttribute("aria-valuenow");
    const arrows = Number(document.querySelector(".sequence-diagram").dataset.arrows || 0);
    if (percent && seen.percents.at(-1) !== percent) seen.percents.push(percent);
    if (seen.arrows.at(-1) !== arrows) seen.arrows.push(arrows);
  };
  const options = { subtree: true, childList: true, attributes: true };
  new MutationObserver(note).observe(document.querySelector("#live-panel"), options);
}"""


# Records, in the workers board, every state a worker row shows.
RECORD_STATES = """() => {
  window.states = [];
  const note = () =>
    document.querySelectorAll("tr[data-state]").forEach((row) => window.states.push(row.dataset.state));
  new MutationObserver(note).observe(document.querySelector("#boards"), { subtree: true, childList: true });
}"""


def test_slow_count_moves_the_progress_bar_while_the_diagram_grows(page, browser, platform, screenshot):
    board = page.context.new_page()  # the same logged-in session
    board.goto(platform.url + "/workers")
    board.wait_for_selector(LIVE)
    page.goto("/plugins/slow_count")
    page.wait_for_selector(LIVE)
    assert page.input_value("#field-steps") == "5" and page.input_value("#field-delay_ms") == "600"
    page.evaluate(RECORD)
    board.evaluate(RECORD_STATES)
    page.click("#plugin-run button[type=submit]")
    # The page's own observer records every value (a polled selector can miss a 600 ms state on a
    # loaded machine); the run is still going at 40 %.
    page.wait_for_function("() => window.seen.percents.includes('40')")
    board.wait_for_function("() => window.states.includes('executing')", timeout=10_000)
    screenshot(board, "workers")
    screenshot(page, "live-progress")
    page.wait_for_selector("[data-testid=live-status]:text('succeeded')", timeout=60_000)
    rows = page.locator("#live-events > li").count()
    page.wait_for_function(f"() => Number(document.querySelector('.sequence-diagram').dataset.arrows) === {rows}")
    seen = page.evaluate("() => window.seen")
    percents, arrows = seen["percents"], seen["arrows"]
    assert [p for p in percents if p in {"20", "40", "60", "80", "100"}] == ["20", "40", "60", "80", "100"], percents
    # Drawn while it runs: the arrow count only grows, through several values, up to the whole trace.
    assert len(set(arrows) - {0}) >= 3 and arrows == sorted(arrows) and arrows[-1] == rows, arrows
    assert '"counted": 5' in page.inner_text("[data-testid=result]")
    board.wait_for_selector("tbody.recent tr[data-state=removed]")
    assert {"executing", "removed"} <= set(board.evaluate("() => window.states")), "board states"
    board.close()


@pytest.mark.node
def test_a_node_plugin_is_drawn_live_like_the_others(page, screenshot):
    page.goto("/plugins/count_primes")
    page.wait_for_selector(LIVE)
    page.fill("#field-limit", "200000")
    page.fill("#field-delay_ms", "150")
    page.evaluate(RECORD)
    page.click("#plugin-run button[type=submit]")
    page.wait_for_function("() => window.seen.percents.length >= 3")
    screenshot(page, "node-live-progress")
    page.wait_for_selector("[data-testid=live-status]:text('succeeded')", timeout=60_000)
    rows = page.locator("#live-events > li").count()
    page.wait_for_function(f"() => Number(document.querySelector('.sequence-diagram').dataset.arrows) === {rows}")
    seen = page.evaluate("() => window.seen")
    assert len(seen["percents"]) >= 5 and seen["percents"][-1] == "100", seen["percents"]
    assert len(set(seen["arrows"]) - {0}) >= 3 and seen["arrows"] == sorted(seen["arrows"]), seen["arrows"]
    svg = page.inner_html(".sequence-diagram")
    assert "Node Runtime" in svg and "Node worker" in svg
    assert '"count": 17984' in page.inner_text("[data-testid=result]")


def test_history_opens_an_invocation_and_replays_its_trace(page, api, screenshot):
    invocation_id = api.post("/api/v1/calculate/divide", json={"operand1": 9, "operand2": 3}).json()["invocation_id"]
    page.goto("/invocations")
    page.select_option("#f-plugin", "divide_numbers")
    page.wait_for_function("() => !document.querySelector('#history-table').textContent.includes('subtract_numbers')")
    assert "plugin=divide_numbers" in page.url
    screenshot(page, "history")
    page.click(f"tr[data-href='/invocations/{invocation_id}'] td:nth-child(2)")
    page.wait_for_url(f"**/invocations/{invocation_id}")
    page.wait_for_selector(".sequence-diagram svg")
    total = page.locator("#trace-events > li").count()
    assert total >= 30 and _arrows(page) == total
    assert re.search(r"\+\d+\.\d ms", page.inner_html(".sequence-diagram"))  # arrows carry their offsets
    screenshot(page, "invocation")
    page.click("[data-replay]")
    page.wait_for_function("() => Number(document.querySelector('.sequence-diagram').dataset.arrows) < 5")
    page.wait_for_function(f"() => Number(document.querySelector('.sequence-diagram').dataset.arrows) === {total}")
    page.wait_for_selector("[data-replay]:not([disabled])")


def test_workers_board_shows_each_supervisor_up_or_down(page, platform):
    page.goto("/workers")
    page.wait_for_selector(LIVE)
    python, java = (f"127.0.0.1:{platform.supervisor_ports[r]}" for r in ("python", "java"))
    page.wait_for_selector(f"section.board[data-up=true]:has-text('{python}')")
    page.wait_for_selector(f"section.board[data-up=false]:has-text('{java}')")
    assert "retrying in" in page.inner_text("section.board[data-up=false]")
    page.wait_for_selector(".state-diagram svg")


@pytest.mark.parametrize(
    "path", ["/", "/live", "/workers", "/invocations", "/timings", "/plugins", "/plugins/subtract_numbers", "/admin/"]
)
def test_pages_load_without_console_errors(page, path, screenshot):
    response = page.goto(path)
    assert response.status == 200
    page.wait_for_load_state("networkidle") if path != "/workers" else page.wait_for_selector(LIVE)
    if path in {"/timings", "/plugins"}:
        screenshot(page, path.strip("/"))
