"""What the process backend's worker sandbox costs: the same requests with it on and off.

Two platforms run side by side, one with ``WORKER_SANDBOX=auto`` (sandboxed, as by default) and
one with ``WORKER_SANDBOX=off``; each row's requests alternate between them, so that the load of a
shared machine falls on both alike. Rows: ephemeral and pooled, Python (subtract: forked from the
zygote) and Java (add: spawned under bwrap). The target (issue 20): at most 10 ms added to an
ephemeral p50, nothing measurable to a warm (pooled) one.

    python -m bench.sandbox [--requests N]

``bench.run`` calls ``measure()`` and ``render()`` and appends the table to its own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import httpx

from tests.support.platform import REPO, Platform, pids_using

MODES = ("off", "auto")  # sandbox off, on
OPERATIONS = {
    "python": ("subtract_numbers", {"operand1": 10, "operand2": 5}),
    "java": ("add_numbers", {"operand1": 10, "operand2": 5}),
}
JAVA_JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
TARGET_EPHEMERAL_MS = 10.0


@dataclass
class Row:
    runtime: str
    mode: str  # ephemeral, pooled
    e2e: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    allocation: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    release: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})

    def median(self, series: str, sandbox: str) -> float:
        values = getattr(self, series)[sandbox]
        return statistics.median(values) if values else float("nan")


def _call(client: httpx.Client, plugin: str, arguments: dict, row: Row, sandbox: str) -> None:
    started = time.perf_counter()
    response = client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{plugin} (sandbox {sandbox}): HTTP {response.status_code}: {response.text}")
    timings = response.json()["timings_ms"]
    row.e2e[sandbox].append(elapsed)
    if timings["allocation"] is not None:
        row.allocation[sandbox].append(timings["allocation"])
    if timings["release"] is not None:
        row.release[sandbox].append(timings["release"])


def _platform(sandbox: str, runtimes: tuple[str, ...]) -> Platform:
    platform = Platform(
        runtimes=runtimes, absent_runtimes=(), extra_env={"LOG_LEVEL": "ERROR", "WORKER_SANDBOX": sandbox}
    ).start()
    for runtime in runtimes:
        base, _ = OPERATIONS[runtime]
        platform.add_plugin_variant(
            base, base + "_pooled", mode="pooled", min_idle=1, max_workers=1, max_concurrency=4, max_uses=0
        )
    return platform


def measure(requests: int, runtimes: tuple[str, ...] | None = None) -> tuple[list[Row], list[int]]:
    """Rows measured with the sandbox on and off in the same run; and worker pids left behind (none)."""
    runtimes = runtimes or (("python", "java") if JAVA_JAR.exists() else ("python",))
    platforms = {sandbox: _platform(sandbox, runtimes) for sandbox in MODES}
    rows: list[Row] = []
    try:
        clients = {sandbox: platform.client() for sandbox, platform in platforms.items()}
        for runtime in runtimes:
            base, arguments = OPERATIONS[runtime]
            for mode, plugin, count in (("ephemeral", base, requests), ("pooled", base + "_pooled", requests * 3)):
                row = Row(runtime, mode)
                for sandbox in MODES:  # warm each gateway's caches (and each pool's worker)
                    for _ in range(2):
                        clients[sandbox].post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)
                for index in range(count):
                    # Alternate which goes first: neither always meets the other's aftermath.
                    order = MODES if index % 2 == 0 else tuple(reversed(MODES))
                    for sandbox in order:
                        _call(clients[sandbox], plugin, arguments, row, sandbox)
                rows.append(row)
        for client in clients.values():
            client.close()
    finally:
        for platform in platforms.values():
            platform.stop()
    leftovers = [pid for platform in platforms.values() for pid in pids_using(str(platform.socket_root))]
    return rows, leftovers


def render(rows: list[Row]) -> str:
    lines = [
        "Worker sandbox on and off in the same run (process backend; requests alternate between a "
        "sandboxed and an unsandboxed platform; medians, ms):",
        "",
        "| runtime | mode | e2e p50 off | e2e p50 on | added | allocation off | allocation on | release off "
        "| release on | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        off, on = row.median("e2e", "off"), row.median("e2e", "auto")
        added = on - off
        if row.mode == "ephemeral":
            verdict = "met" if added <= TARGET_EPHEMERAL_MS else f"MISSED by {added - TARGET_EPHEMERAL_MS:.1f}"
            target = f"<= {TARGET_EPHEMERAL_MS:g} added: {verdict}"
        else:
            target = "nothing measurable: " + ("met" if abs(added) < max(0.1 * off, 0.5) else f"{added:+.1f} ms")
        lines.append(
            f"| {row.runtime} | {row.mode} | {off:.1f} | {on:.1f} | {added:+.1f} | "
            f"{row.median('allocation', 'off'):.1f} | {row.median('allocation', 'auto'):.1f} | "
            f"{row.median('release', 'off'):.1f} | {row.median('release', 'auto'):.1f} | {target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential requests per ephemeral row and sandbox")
    options = parser.parse_args(argv)
    rows, leftovers = measure(options.requests)
    print(render(rows))
    if leftovers:
        raise SystemExit(f"worker processes outlived the platform: {leftovers}")


if __name__ == "__main__":
    main()
