"""The dashboard in a real browser: every view and every fix of issue 14, on a desktop and a phone.

Pages wait for what they record (attributes the page sets, its own MutationObservers), never
for a fixed time.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from tests.browser.conftest import PHONE

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

LIVE = "[data-socket-state][data-state=open]"
FINAL = "[data-testid=live-status][data-final=true]"


def _arrows(page) -> int:
    return int(page.get_attribute(".sequence-diagram", "data-arrows") or 0)


def _all_drawn(page, rows_selector: str = "#live-events > li") -> None:
    """Wait until the diagram holds every row of the trace list."""
    page.wait_for_function(
        f"() => {{ const n = document.querySelectorAll('{rows_selector}').length;"
        " return n > 0 && Number(document.querySelector('.sequence-diagram').dataset.arrows) === n; }"
    )


def _run_plugin(page, plugin: str, **fields: str) -> None:
    """Run ``plugin`` from its page with ``fields`` typed in; return once the run has ended."""
    page.goto(f"/plugins/{plugin}")
    page.wait_for_selector(LIVE)
    for name, value in fields.items():
        page.fill(f"#field-{name}", value)
    page.click("#plugin-submit")
    page.wait_for_selector(FINAL, timeout=30_000)


@contextmanager
def background(platform):
    """Calls of the API from another thread (the test drives the browser meanwhile)."""
    with ThreadPoolExecutor(max_workers=3) as pool:

        def call(path: str, body: dict):
            def post():
                with platform.client() as client:
                    return client.post(path, json=body).json()

            return pool.submit(post)

        yield call


def _running(api, plugin: str, timeout_s: float = 10.0) -> str:
    """The id of a running invocation of ``plugin`` (polled until ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items = api.get("/api/v1/invocations", params={"plugin": plugin, "status": "running"}).json()["results"]
        if items:
            return items[0]["id"]
        time.sleep(0.05)
    raise AssertionError(f"no running {plugin} invocation appeared")


# --- Run: the result in place, the live diagram and waterfall, focus and announcements -------------


def test_run_from_the_keyboard_draws_the_diagram_and_waterfall_and_keeps_the_focus(page, screenshot):
    page.goto("/")
    page.wait_for_selector(LIVE)
    page.select_option("#field-operation", "subtract")
    page.fill("#field-operand1", "10")
    page.fill("#field-operand2", "4")
    url = page.url
    page.focus("#calculator-submit")
    page.keyboard.press("Enter")
    result = page.wait_for_selector("[data-testid=result]")
    assert '"result": 6.0' in result.inner_text() and page.url == url  # in place, no reload
    assert page.evaluate("() => document.activeElement.id") == "calculator-submit"  # focus kept
    page.wait_for_function("() => document.getElementById('page-announce').textContent.includes('Done: HTTP 200')")
    page.wait_for_selector(FINAL)
    _all_drawn(page)
    assert _arrows(page) >= 30
    head = page.inner_html(".seq-head")
    for participant in ("Client", "Gateway", "Registry", "Runtime Client", "Supervisor", "Backend", "Worker"):
        assert f">{participant}<" in head, participant
    assert "worker-2" in head and "python runtime" in head  # labels completed from the trace
    body = page.inner_html(".seq-clip")
    assert "5. Plugin execution" in body and "Progress(50%" in body and "+" in page.inner_text(".seq-clip")
    # The waterfall: the invocation, its phases and spans, true to time, the critical path named.
    labels = page.locator(".wf-row .wf-label").all_inner_texts()
    spans = ("Invocation", "3. Worker allocation", "Spawn", "Readiness probe", "Init", "Invoke", "Stop and remove")
    for label in spans:
        assert label in labels, label
    assert page.locator(".wf-row.critical").count() >= 5 and page.locator(".wf-crit").count() >= 5
    assert "Critical path, its biggest parts:" in page.inner_text("[data-critical-path]")
    page.hover(".wf-row:has-text('Spawn')")
    tip = page.locator(".wf-tip")
    assert tip.is_visible() and " ms" in tip.inner_text() and "→" in tip.inner_text()
    # The live status is announced, and the diagram has a text alternative.
    assert "subtract_numbers succeeded, HTTP 200" in page.text_content("#live-announce")
    assert page.get_attribute(".sequence-diagram", "role") == "img"
    assert "arrows in 7 phases" in page.get_attribute(".sequence-diagram", "aria-label")
    screenshot(page, "calculator")


def test_lifecycle_detail_folds_into_its_phase_and_unfolds_on_demand(page):
    _run_plugin(page, "subtract_numbers", operand1="8", operand2="2")
    _all_drawn(page)
    folds = page.locator(".seq-group")
    assert folds.count() >= 2  # allocation's and cleanup's lifecycle steps
    first = folds.first
    assert first.get_attribute("aria-expanded") == "false" and "lifecycle steps: requested" in first.text_content()
    shown = ".seq-clip .seq-row:not([style*='display: none'])"
    total = _arrows(page)
    folded = page.locator(shown).count()
    assert folded <= total - 6  # a fresh worker's lifecycle is a dozen steps
    first.focus()
    page.keyboard.press("Enter")  # a keyboard unfolds it too
    assert first.get_attribute("aria-expanded") == "true"
    assert folded < page.locator(shown).count() < total
    page.click("[data-detail-toggle]")
    assert page.get_attribute("[data-detail-toggle]", "aria-pressed") == "true"
    assert page.locator(shown).count() == total
    page.focus(".wf-row:has-text('Readiness probe')")  # bars take the focus: their times are said
    assert page.locator(".wf-tip").is_visible() and "Readiness probe" in page.inner_text(".wf-tip")
    page.click("[data-view=waterfall]")
    assert page.locator(".sequence-pane").is_hidden() and page.locator(".waterfall-pane").is_visible()
    page.reload()
    page.wait_for_selector(LIVE)
    assert page.locator(".sequence-pane").is_hidden()  # the choice is remembered
    page.click("[data-view=both]")
    assert page.locator(".sequence-pane").is_visible()


def test_many_progress_steps_fold_into_one_waterfall_row(page):
    _run_plugin(page, "slow_count", steps="15", delay_ms="0")
    folded = page.wait_for_selector(".wf-row[data-steps]")
    assert "16 steps" in folded.inner_text() and folded.get_attribute("aria-expanded") == "false"
    assert page.locator(".wf-row.kind-step").count() == 1
    folded.click()
    page.wait_for_function("() => document.querySelectorAll('.wf-row.kind-step').length === 17")
    assert page.get_attribute(".wf-row[data-steps]", "aria-expanded") == "true"


def test_typed_text_is_checked_in_the_browser_and_kept(page):
    sent = []
    page.on("request", lambda request: sent.append(request.url) if request.url.endswith("/run") else None)
    page.goto("/")
    page.wait_for_selector(LIVE)
    page.fill("#field-operand1", "ten")
    page.click("#calculator-submit")
    error = page.wait_for_selector("#field-operand1-error:not([hidden])")
    assert "is not a number" in error.inner_text()
    assert page.input_value("#field-operand1") == "ten"  # what was typed stays
    assert page.get_attribute("#field-operand1", "aria-invalid") == "true"
    assert page.evaluate("() => document.activeElement.id") == "field-operand1"
    assert not sent  # nothing was sent
    page.fill("#field-operand1", "10")
    page.fill("#field-operand2", "")
    page.click("#calculator-submit")
    assert "required" in page.wait_for_selector("#field-operand2-error:not([hidden])").inner_text()
    assert page.get_attribute("#field-operand1", "aria-invalid") is None and not sent
    page.fill("#field-operand2", "5")
    page.click("#calculator-submit")
    assert '"result": 5.0' in page.wait_for_selector("[data-testid=result]").inner_text()
    page.goto("/plugins/slow_count")
    page.fill("#field-steps", "101")
    page.click("#plugin-submit")
    assert "at most 100" in page.wait_for_selector("#field-steps-error:not([hidden])").inner_text()


# Records, in the page, each value the progress bar and the diagram's arrow count take.
RECORD = """() => {
  const seen = (window.seen = { percents: [], arrows: [], open: false });
  const note = () => {
    const percent = document.querySelector("#live-progress").getAttribute("aria-valuenow");
    const arrows = Number(document.querySelector(".sequence-diagram").dataset.arrows || 0);
    if (percent && seen.percents.at(-1) !== percent) seen.percents.push(percent);
    if (seen.arrows.at(-1) !== arrows) seen.arrows.push(arrows);
    if (document.querySelector(".wf-row.open")) seen.open = true;
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


def test_slow_count_moves_the_progress_bar_while_diagram_and_waterfall_grow(open_page, platform, screenshot):
    page = open_page()
    board = page.context.new_page()  # the same logged-in session
    board.goto(platform.url + "/workers")
    board.wait_for_selector(LIVE)
    page.goto("/plugins/slow_count")
    page.wait_for_selector(LIVE)
    page.fill("#field-steps", "6")
    page.fill("#field-delay_ms", "500")
    page.evaluate(RECORD)
    board.evaluate(RECORD_STATES)
    # The board was opened last; the page watched comes to the front, so that its frames (the diagram
    # draws in animation frames) are not throttled like a background tab's.
    page.bring_to_front()
    page.click("#plugin-submit")
    # The page's own observer records every value (a polled selector can miss a short state).
    page.wait_for_function("() => window.seen.percents.includes('50')")
    board.wait_for_function("() => window.states.includes('executing')", timeout=10_000)
    screenshot(board, "workers")
    screenshot(page, "live-progress")
    page.wait_for_selector(FINAL, timeout=60_000)
    _all_drawn(page)
    seen = page.evaluate("() => window.seen")
    assert [p for p in seen["percents"] if p in {"17", "33", "50", "67", "83", "100"}] == [
        "17",
        "33",
        "50",
        "67",
        "83",
        "100",
    ], seen["percents"]
    arrows = seen["arrows"]
    assert len(set(arrows) - {0}) >= 5 and arrows == sorted(arrows), arrows  # one by one, never redrawn
    assert seen["open"]  # the waterfall drew spans still open while it ran
    assert '"counted": 6' in page.inner_text("[data-testid=result]")
    # Percentages rounded wherever they are shown.
    assert "Progress(16.7%" in page.inner_html(".seq-clip") and "16.6667" not in page.inner_text("body")
    assert "16.6667" in page.get_attribute("#live-events li[data-kind=progress]", "data-detail")  # kept as recorded
    steps = page.locator(".wf-row.kind-step .wf-label").all_inner_texts()
    assert steps[:6] == [f"Step {n}" for n in range(1, 7)]
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
    page.click("#plugin-submit")
    page.wait_for_function("() => window.seen.percents.length >= 3")
    screenshot(page, "node-live-progress")
    page.wait_for_selector(FINAL, timeout=60_000)
    _all_drawn(page)
    seen = page.evaluate("() => window.seen")
    assert len(seen["percents"]) >= 5 and seen["percents"][-1] == "100", seen["percents"]
    assert len(set(seen["arrows"]) - {0}) >= 3 and seen["arrows"] == sorted(seen["arrows"]), seen["arrows"]
    assert "node runtime" in page.inner_text(".sequence-diagram")
    assert '"count": 17984' in page.inner_text("[data-testid=result]")


def test_a_failed_run_is_drawn_in_the_error_colour_with_a_failed_progress_bar(page):
    _run_plugin(page, "slow_count_short", steps="5", delay_ms="600")  # times out after 1 s
    progress = page.wait_for_selector("#live-progress[data-state=failed]")
    assert "Failed (timeout)" in progress.inner_text() and "stopped at" in progress.inner_text()
    assert page.locator(".seq-row.style-failure").count() >= 1
    assert page.locator(".wf-row.failure").count() >= 1
    assert page.get_attribute("[data-testid=live-status]", "class").endswith("status-timeout")
    assert "HTTP 504" in page.inner_text("#run-result")


# --- Live page: runs in flight ------------------------------------------------------------------


def test_the_live_page_follows_the_newest_run_never_an_older_one_and_keeps_to_a_pick(page, api, platform, screenshot):
    page.goto("/live")
    page.wait_for_selector(LIVE)
    with background(platform) as call:
        long_run = call("/api/v1/plugins/slow_count/invoke", {"steps": 10, "delay_ms": 400})
        slow_id = _running(api, "slow_count")
        page.wait_for_selector(f"#runs-in-flight li[data-invocation='{slow_id}'][data-status=running]")
        page.wait_for_selector("#live-header strong:text('slow_count')")
        quick = call("/api/v1/calculate/subtract", {"operand1": 7, "operand2": 2}).result(timeout=30)
        page.wait_for_selector(f"#live-header a[href='/invocations/{quick['invocation_id']}']")  # the newest
        page.wait_for_selector(FINAL)
        # The older run goes on: its events arrive, the panel stays on the newer run.
        page.wait_for_function(
            f"() => Number(document.querySelector(\"li[data-invocation='{slow_id}'] .run-percent\")?.textContent"
            ".replace('%', '')) >= 30"
        )
        assert "subtract_numbers" in page.inner_text("#live-header")
        screenshot(page, "live")
        page.click(f"#runs-in-flight li[data-invocation='{slow_id}'] button")  # pick it
        page.wait_for_selector(f"#live-header a[href='/invocations/{slow_id}']")
        # What it did so far, then on.
        page.wait_for_function("() => document.querySelectorAll('#live-events > li').length >= 18")
        assert page.locator("[data-testid=follow-newest]").is_visible()
        assert page.get_attribute(f"li[data-invocation='{slow_id}'] button", "aria-current") == "true"
        call("/api/v1/calculate/subtract", {"operand1": 1, "operand2": 1}).result(timeout=30)
        assert "slow_count" in page.inner_text("#live-header")  # kept to the pick
        assert long_run.result(timeout=60)["status"] == "succeeded"
    page.wait_for_selector(FINAL)
    _all_drawn(page)
    rows = page.locator("#live-events > li").count()
    assert [int(s) for s in page.locator("#live-events > li").evaluate_all("l => l.map(li => li.dataset.seq)")] == list(
        range(1, rows + 1)
    )
    assert "$API_KEY" in page.text_content("[data-testid=live-curl]")  # the example call says where the key goes


def test_an_invocations_page_opened_mid_run_shows_what_happened_so_far_and_updates_at_its_end(page, api, platform):
    with background(platform) as call:
        done = call("/api/v1/plugins/slow_count/invoke", {"steps": 6, "delay_ms": 400})
        invocation_id = _running(api, "slow_count")
        page.goto(f"/invocations/{invocation_id}")
        assert page.inner_text("[data-testid=invocation-status]") == "running"
        page.wait_for_function("() => document.querySelectorAll('#live-events > li').length >= 15")  # so far
        assert page.locator("[data-testid=still-running]").is_visible()
        assert page.is_disabled("[data-replay=play]")  # replay once it has ended
        done.result(timeout=60)
    page.wait_for_selector("[data-testid=invocation-status]:text('succeeded')")  # no reload
    assert '"counted": 6' in page.inner_text("[data-testid=stored-result]")
    page.wait_for_selector("[data-replay=play]:not([disabled])")
    _all_drawn(page)


def test_the_cancel_button_cancels_a_running_invocation(page, api, platform):
    with background(platform) as call:
        done = call("/api/v1/plugins/slow_count/invoke", {"steps": 100, "delay_ms": 200})
        invocation_id = _running(api, "slow_count")
        page.goto(f"/invocations/{invocation_id}")
        page.click("[data-testid=cancel]")
        page.wait_for_selector("[data-testid=invocation-status]:text('cancelled')")
        assert page.locator("[data-testid=cancel]").count() == 0
        assert done.result(timeout=60)["error"]["code"] == "cancelled"
    assert api.get(f"/api/v1/invocations/{invocation_id}").json()["status"] == "cancelled"


# --- History: find and compare -------------------------------------------------------------------


def test_history_finds_by_argument_value_and_compares_a_cold_and_a_warm_call(page, api, screenshot):
    marker = 424242
    cold = api.post("/api/v1/plugins/subtract_numbers/invoke", json={"operand1": marker, "operand2": 1}).json()
    api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 1, "operand2": 2})  # the pool is warm now
    warm = api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": marker, "operand2": 2}).json()
    assert api.get(f"/api/v1/invocations/{warm['invocation_id']}").json()["worker_warm"] is True
    page.goto("/invocations")
    page.fill("#f-args", f"operand1={marker}")
    page.press("#f-args", "Enter")
    page.wait_for_selector("[data-testid=history-count]:text('2 invocations')")
    assert f"args=operand1%3D{marker}" in page.url
    page.fill("#f-q", cold["invocation_id"][:8])
    page.press("#f-q", "Enter")
    page.wait_for_selector("[data-testid=history-count]:text('1 invocation')")
    page.fill("#f-q", "")
    page.press("#f-q", "Enter")
    page.wait_for_selector("[data-testid=history-count]:text('2 invocations')")
    screenshot(page, "history")
    page.check(f"input[value='{cold['invocation_id']}']")
    assert page.is_disabled("[data-compare-button]")
    page.check(f"input[value='{warm['invocation_id']}']")
    page.click("[data-compare-button]")
    page.wait_for_url("**/invocations/compare?**")
    table = page.locator("[data-testid=compare-table]")
    assert table.locator("tr[data-key=phase-3][data-notable=true]").count() == 1  # allocation differs
    assert "operand2" in page.inner_text("[data-testid=arguments-differ]")
    page.wait_for_function("() => document.querySelectorAll('.compare-side .wf-row').length >= 20")
    screenshot(page, "compare")


# --- Act on a run ------------------------------------------------------------------------------------


def test_a_run_is_copied_as_curl_downloaded_re_run_and_replayed(open_page, api, platform, tmp_path, screenshot):
    page = open_page(permissions=["clipboard-read", "clipboard-write"])
    done = api.post("/api/v1/plugins/slow_count/invoke", json={"steps": 3, "delay_ms": 20}).json()
    page.goto(f"/invocations/{done['invocation_id']}")
    _all_drawn(page, "#trace-events > li")
    page.click("[data-testid=copy-curl]")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert '"Authorization: Bearer $API_KEY"' in copied and '"steps": 3' in copied and "/slow_count/invoke" in copied
    with page.expect_download() as download:
        page.click("[data-testid=download-json]")
    saved = tmp_path / "invocation.json"
    download.value.save_as(saved)
    document = json.loads(saved.read_text())
    assert document["id"] == done["invocation_id"] and len(document["trace"]) >= 30
    # Replay: step through, then play in slow motion and pause.
    total = page.locator("#trace-events > li").count()
    page.click("[data-replay=step]")
    page.click("[data-replay=step]")
    assert _arrows(page) == 2 and "2 / " in page.inner_text("[data-replay-position]")
    page.select_option("[data-replay-speed]", "0.1")
    page.click("[data-replay=play]")
    page.wait_for_function("() => Number(document.querySelector('.sequence-diagram').dataset.arrows) > 4")
    page.click("[data-replay=play]")  # pause
    paused = _arrows(page)
    assert page.inner_text("[data-replay=play]").endswith("Resume") and 2 < paused < total
    assert page.locator(".wf-cursor").is_visible()
    screenshot(page, "invocation")
    page.select_option("[data-replay-speed]", "1")
    page.click("[data-replay=play]")
    page.wait_for_function(f"() => Number(document.querySelector('.sequence-diagram').dataset.arrows) === {total}")
    page.wait_for_selector("[data-replay=play]:text('Replay')")
    # Re-run: the same arguments, at once, in the plugin's page (the address forgets "autorun").
    page.click("[data-testid=rerun]")
    result = page.wait_for_selector("[data-testid=result]", timeout=30_000)
    assert '"counted": 3' in result.inner_text() and "autorun" not in page.url
    page.wait_for_selector(FINAL)
    rerun = page.get_attribute("#run-result a", "href")
    again = api.get(f"/api/v1/invocations/{rerun.rsplit('/', 1)[1]}").json()
    assert again["arguments"] == {"steps": 3, "delay_ms": 20} and again["id"] != done["invocation_id"]


# --- Timings, fixes, phone, keyboard -----------------------------------------------------------------------


def test_timings_split_modes_and_compare_only_fresh_workers_with_the_seed(page, api, screenshot):
    for _ in range(2):
        api.post("/api/v1/plugins/subtract_pooled/invoke", json={"operand1": 3, "operand2": 1})
    api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1})
    page.goto("/timings")
    reused = page.locator("tr:has-text('subtract_pooled'):has-text('reused worker')")
    fresh = page.locator("tr:has-text('subtract_numbers'):has-text('fresh worker')")
    assert "n/a" in reused.first.inner_text() and "faster" not in reused.first.inner_text()
    assert "faster" in fresh.first.inner_text()
    screenshot(page, "timings")


def test_unknown_pages_are_styled(page):
    response = page.goto("/no-such-page")
    assert response.status == 404
    assert page.locator("[data-testid=not-found]").is_visible() and page.locator("nav a:text('Live')").is_visible()
    assert page.evaluate("() => getComputedStyle(document.querySelector('.topbar')).position") == "sticky"  # styled
    # The browser reports the page's own status as a console error: that one is the point here.
    page.console_watch.problems = [p for p in page.console_watch.problems if "404 (Not Found)" not in p]


PHONE_PAGES = ["/", "/live", "/invocations", "/timings", "/plugins", "/plugins/slow_count", "/workers"]


@pytest.mark.parametrize("path", PHONE_PAGES)
def test_a_390_px_phone_gets_the_whole_menu_and_no_sideways_scrolling(open_page, path, screenshot):
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True)
    page.goto(path)
    page.wait_for_load_state("networkidle") if path != "/workers" else page.wait_for_selector(LIVE)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} is {width} px wide"
    for link in page.locator(".topbar nav a").all():
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], link.inner_text()
    if path == "/":
        page.click("#calculator-submit")
        assert page.wait_for_selector("[data-testid=result]").is_visible()
        page.wait_for_selector(FINAL)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "phone")


def test_a_keyboard_alone_skips_to_the_content_and_runs_a_calculation(page):
    page.goto("/")
    page.wait_for_selector(LIVE)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "field-operand1":
            break
    else:
        raise AssertionError("Tab never reached the first operand")
    page.keyboard.press("Control+A")
    page.keyboard.type("12")
    page.keyboard.press("Tab")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "calculator-submit"
    page.keyboard.press("Enter")
    assert '"result": 9.0' in page.wait_for_selector("[data-testid=result]").inner_text()
    assert page.evaluate("() => document.activeElement.id") == "calculator-submit"
    page.wait_for_selector(FINAL)
    page.keyboard.press("Tab")  # onwards, into the trace view's controls
    assert page.evaluate("() => document.activeElement.closest('.run-result, .trace-view') !== null")


def test_workers_board_shows_each_supervisor_up_or_down(page, platform):
    page.goto("/workers")
    page.wait_for_selector(LIVE)
    python, java = (f"127.0.0.1:{platform.supervisor_ports[r]}" for r in ("python", "java"))
    page.wait_for_selector(f"section.board[data-up=true]:has-text('{python}')")
    page.wait_for_selector(f"section.board[data-up=false]:has-text('{java}')")
    # The page's first render knows the supervisor is down; the relay, once its watch fails, when it retries.
    page.wait_for_selector("section.board[data-up=false]:has-text('retrying in')", timeout=10_000)
    page.wait_for_selector(".state-diagram svg")


@pytest.mark.parametrize(
    "path", ["/", "/live", "/workers", "/invocations", "/timings", "/plugins", "/plugins/subtract_numbers", "/admin/"]
)
def test_pages_load_without_console_errors(page, path, screenshot):
    response = page.goto(path)
    assert response.status == 200
    page.wait_for_load_state("networkidle") if path != "/workers" else page.wait_for_selector(LIVE)
    if path == "/plugins":
        screenshot(page, "plugins")
