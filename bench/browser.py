"""``python -m bench.browser``: the dashboard's live view in a real browser, timed.

Starts the platform on loopback (as the end-to-end tests do), logs in with Debian's Chromium
driven by Playwright, and runs plugins from their dashboard pages while the page itself records,
on its own clock (``performance.now()``):

* **click → first arrow**: from the click on Run to the first arrow of the sequence diagram
  drawn (the frame after the diagram counts one arrow);
* **event → first arrow**: from the WebSocket message that carries the first trace event to
  that arrow (target ≤ 100 ms);
* **answer → result**: from the end of the HTTP answer of the run (resource timing
  ``responseEnd``) to the frame after the result is in the page (target ≤ 50 ms);
* **longest task**: the longest main-thread task (PerformanceObserver ``longtask``, which
  reports tasks over 50 ms) from the click until the diagram is complete (target ≤ 50 ms;
  "none" means no task reached 50 ms).

Scenarios: subtract ephemeral (a fresh worker per call), subtract pooled (a warm worker), and
slow_count with 100 progress steps. Each is run ``--runs`` times; the table gives medians (the
longest task: the worst run).

    python -m bench.browser [--runs N] [--output docs/PERFORMANCE.md]

The table is also written between ``<!-- browser-bench:start -->`` and ``<!-- browser-bench:end -->``
in ``--output``, keeping the text around them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.browser import CHROMIUM, chromium_launch, log_in
from tests.support.platform import Platform

START, END = "<!-- browser-bench:start -->", "<!-- browser-bench:end -->"
TARGETS = {"event_to_arrow": 100.0, "answer_to_result": 50.0, "longest_task": 50.0}

# Installed before the page's own scripts: the clock starts on the click (``__bench.arm()``).
INSTRUMENT = """(() => {
  const bench = (window.__bench = { longtasks: [] });
  const frame = (key) => requestAnimationFrame(() => { if (bench[key] == null) bench[key] = performance.now(); });
  // Observers on the few elements that matter (observing the whole page would cost the page).
  bench.arm = () => {
    const click = performance.now();
    Object.assign(bench, { armed: true, click, traceMessage: null, arrow: null, answer: null, result: null });
    const diagram = document.querySelector(".sequence-diagram");
    new MutationObserver((_, observer) => {
      if (Number(diagram.dataset.arrows || 0) > 0) { frame("arrow"); observer.disconnect(); }
    }).observe(diagram, { attributes: true, attributeFilter: ["data-arrows"] });
    const form = document.querySelector("form[data-needs-live]").parentElement;
    new MutationObserver((_, observer) => {
      if (!document.querySelector("[data-testid=result], [data-testid=run-error]")) return;
      frame("result");
      observer.disconnect();
    }).observe(form.parentElement, { childList: true });
  };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (bench.armed && bench.traceMessage == null && String(event.data).includes("trace-event"))
          bench.traceMessage = performance.now();
      });
    }
  };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) bench.longtasks.push([entry.startTime, entry.duration]);
  }).observe({ type: "longtask", buffered: true });
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries())
      if (bench.armed && /\\/run$/.test(entry.name)) bench.answer = entry.responseEnd;
  }).observe({ type: "resource", buffered: true });
})();"""

DONE = """() => {
  const status = document.querySelector("[data-testid=live-status]");
  const diagram = document.querySelector(".sequence-diagram");
  const rows = document.querySelectorAll("#live-events > li").length;
  return Boolean(status && status.dataset.final === "true" && rows && Number(diagram.dataset.arrows) === rows);
}"""


@dataclass
class Scenario:
    name: str
    path: str
    fields: dict[str, str]
    samples: dict[str, list[float]] = field(default_factory=dict)
    longest: list[float] = field(default_factory=list)

    def add(self, key: str, value: float | None) -> None:
        if value is not None:
            self.samples.setdefault(key, []).append(value)

    def median(self, key: str) -> float | None:
        values = self.samples.get(key)
        return statistics.median(values) if values else None


def run_once(page: Any, scenario: Scenario) -> None:
    page.goto(scenario.path)
    page.wait_for_selector("[data-socket-state][data-state=open]")
    for name, value in scenario.fields.items():
        page.fill(f"#field-{name}", value)
    page.evaluate("() => window.__bench.arm()")
    page.click("form[data-needs-live] button[type=submit]")
    page.wait_for_function(DONE, timeout=120_000)
    time.sleep(0.5)  # a redraw the page scheduled after the last arrow still counts
    bench = page.evaluate("() => window.__bench")
    click = bench["click"]

    def since(start: float | None, end: float | None) -> float | None:
        return end - start if start is not None and end is not None else None

    scenario.add("click_to_arrow", since(click, bench["arrow"]))
    scenario.add("event_to_arrow", since(bench["traceMessage"], bench["arrow"]))
    scenario.add("answer_to_result", since(bench["answer"], bench["result"]))
    tasks = [duration for start, duration in bench["longtasks"] if start + duration >= click]
    scenario.longest.append(max(tasks, default=0.0))


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def _tasks(longest: list[float]) -> str:
    """The worst run's longest task, and in how many runs one reached 50 ms."""
    worst, runs = max(longest, default=0.0), sum(1 for value in longest if value >= 50)
    return "none ≥ 50" if worst == 0 else f"{worst:.0f} ({runs} of {len(longest)} runs)"


def table(scenarios: list[Scenario], runs: int) -> str:
    lines = [
        f"Medians of {runs} runs each, ms. Longest task: the worst run's, and how many runs had one;"
        " Chromium reports only tasks of 50 ms or more.",
        "",
        "| scenario | click → first arrow | event → first arrow | HTTP answer → result visible | longest task |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        lines.append(
            f"| {s.name} | {_ms(s.median('click_to_arrow'))} | {_ms(s.median('event_to_arrow'))} | "
            f"{_ms(s.median('answer_to_result'))} | {_tasks(s.longest)} |"
        )
    lines.append(
        f"| target | | ≤ {TARGETS['event_to_arrow']:.0f} | ≤ {TARGETS['answer_to_result']:.0f} | "
        f"≤ {TARGETS['longest_task']:.0f} |"
    )
    return "\n".join(lines)


def write_output(path: Path, text: str) -> None:
    """Replace what is between the markers (appended at the end when missing)."""
    document = path.read_text() if path.exists() else ""
    if START not in document:
        document = document.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def measure(runs: int) -> list[Scenario]:
    from playwright.sync_api import sync_playwright

    scenarios = [
        Scenario("subtract, ephemeral", "/plugins/subtract_numbers", {"operand1": "10", "operand2": "5"}),
        Scenario("subtract, pooled (warm)", "/plugins/subtract_bench_pooled", {"operand1": "10", "operand2": "5"}),
        Scenario("slow_count, 100 steps of 10 ms", "/plugins/slow_count", {"steps": "100", "delay_ms": "10"}),
    ]
    platform = Platform().start()
    try:
        platform.add_plugin_variant("subtract_numbers", "subtract_bench_pooled", mode="pooled", min_idle=1)
        platform.create_user("bench", "bench-password", staff=True)
        with sync_playwright() as playwright:
            browser = chromium_launch(playwright)
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=platform.url)
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.add_init_script(INSTRUMENT)
            log_in(page, "bench", "bench-password")
            for scenario in scenarios:
                run_once(page, scenario)  # warm-up: caches, the pool's first worker, the browser's JIT
                scenario.samples.clear()
                scenario.longest.clear()
                for _ in range(runs):
                    run_once(page, scenario)
            browser.close()
    finally:
        platform.stop()
    return scenarios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, help="markdown file to write the table into, between its markers")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        sys.exit(f"needs {CHROMIUM} (apt-get install -y chromium)")
    text = table(measure(args.runs), args.runs)
    print(text)
    if args.output:
        write_output(args.output, text)


if __name__ == "__main__":
    main()
