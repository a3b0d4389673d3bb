"""Load from ``wrk`` (Debian's package: compiled, so it does not compete with the gateway for the
interpreter) and CPU time read from /proc, for ``bench/hotpath.py``.

``wrk_post`` posts one JSON body over keep-alive connections for a fixed time and returns wrk's
own latency percentiles and counts (a Lua ``done`` hook prints them as JSON), plus the CPU wrk
itself used (``wait4``'s rusage: the load generator's cost is part of the record). ``CpuMeter``
sums utime + stime of process trees (a gateway and its server processes, a supervisor, workers)
between two readings, so that a figure can be divided by the invocations it served.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")

# Every request carries the body and headers; done() prints one JSON line (latencies in µs).
LUA = """
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("WRK_KEY")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


@dataclass
class Load:
    clients: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    wrk_cpu_ms: float

    @property
    def per_s(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def wrk_post(url: str, body: bytes, *, clients: int, seconds: float, api_key: str = "") -> Load:
    """``clients`` keep-alive connections posting ``body`` to ``url`` for ``seconds``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(LUA)
    try:
        threads = min(2, clients)
        process = subprocess.Popen(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(clients),
                "-d",
                f"{seconds:g}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "WRK_BODY": body.decode(), "WRK_KEY": api_key},
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out, err = process.stdout.read().decode(), process.stderr.read().decode()
        process.stdout.close()
        process.stderr.close()
    finally:
        os.unlink(script.name)
    line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out}\n{err}")
    data = json.loads(line.removeprefix("WRKJSON "))
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    return Load(
        clients=clients,
        requests=data["requests"],
        errors=errors,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        wrk_cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000,
    )


# --- CPU from /proc -------------------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            found += [int(x) for x in text.split()]
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += _children(current)
    return out


class CpuMeter:
    """CPU milliseconds used by named groups of processes between ``start()`` and ``stop()``.

    A group is a callable returning pids, read at both ends (a process that appears in between
    counts from zero; one that exits in between is lost, which for warm pools does not happen).
    """

    def __init__(self, groups: dict[str, callable]) -> None:
        self.groups = groups
        self.before: dict[str, dict[int, int]] = {}

    def _read(self) -> dict[str, dict[int, int]]:
        return {name: {pid: _cpu_ticks(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {
            name: sum(ticks - self.before[name].get(pid, 0) for pid, ticks in after[name].items()) * 1000 / TICKS
            for name in self.groups
        }
