"""The hostile plugins (plugin_workers/python/plugins/hostile/) as registry rows, and the checks
shared by the process-backend and docker-backend tests.

Each check runs the misbehaving plugin over HTTP, and while it misbehaves (and after) asks the
same platform for a normal subtraction, which must still answer 200.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.platform import Platform
from tests.support.waits import wait_for

MEMORY_MB = 128
ANY = {"type": "object"}


def _row(primitive: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"hostile_{primitive}",
        "primitive": primitive,
        "runtime_id": "python",
        "entrypoint": f"plugins.hostile.{primitive}:plugin",
        "input_schema": ANY,
        "output_schema": ANY,
        "timeout_s": 30.0,
        **fields,
    }


HOSTILE = [
    _row("memory_hog", timeout_s=30.0, memory_mb=MEMORY_MB),
    _row("cpu_spinner", timeout_s=2.0),
    _row("fork_bomb", timeout_s=3.0, pids=64),
    _row("fs_writer"),
    _row("net_opener"),
    _row("output_flood"),
    _row("huge_result", memory_mb=512),
    _row("stall", timeout_s=2.0),
    _row("never_ready"),
    _row("prober"),
]


def register_hostile(platform: Platform, *, backend: str = "") -> None:
    """Add (or update) the hostile plugins in the platform's registry, in one manage.py call."""
    rows = [{**row, "backend": backend} for row in HOSTILE]
    platform.manage(
        "shell",
        "-c",
        "import json; from platform_core.registry.models import PluginSpec as P\n"
        f"for row in json.loads({json.dumps(rows)!r}):\n"
        "    s = P(**row); s.full_clean(); P.objects.filter(name=s.name).delete(); s.save()\n",
    )


@dataclass
class Background:
    """One request running in a thread, so that the test can do other things meanwhile."""

    thread: threading.Thread
    box: dict[str, Any]

    @classmethod
    def post(cls, platform: Platform, path: str, body: dict[str, Any], *, api_key: str | None = None) -> Background:
        box: dict[str, Any] = {}

        def call() -> None:
            started = time.monotonic()
            with platform.client(api_key=api_key) as client:
                try:
                    box["response"] = client.post(path, json=body)
                except httpx.HTTPError as exc:  # reported by result(), not lost in the thread
                    box["error"] = exc
            box["elapsed_s"] = time.monotonic() - started

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        return cls(thread, box)

    def result(self, timeout_s: float = 90.0) -> httpx.Response:
        self.thread.join(timeout=timeout_s)
        assert "error" not in self.box, f"the request failed: {self.box['error']!r}"
        assert "response" in self.box, "the request did not answer"
        return self.box["response"]

    @property
    def elapsed_s(self) -> float:
        return self.box["elapsed_s"]


def subtract_still_works(api: httpx.Client) -> None:
    response = api.post("/api/v1/calculate/subtract", json={"operand1": 7, "operand2": 2})
    assert response.status_code == 200, response.text
    assert response.json()["result"] == 5.0


def invocation(api: httpx.Client, invocation_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/invocations/{invocation_id}")
    assert response.status_code == 200, response.text
    return response.json()


def workers_of(api: httpx.Client, plugin: str) -> list[dict[str, Any]]:
    supervisors = api.get("/api/v1/workers").json()["supervisors"]
    return [w for s in supervisors for w in s["workers"] if w["plugin"] == plugin]


def run_hostile(
    platform: Platform, api: httpx.Client, primitive: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """Invoke a hostile plugin; while it runs, a subtraction must succeed; after it, again."""
    call = Background.post(platform, f"/api/v1/plugins/hostile_{primitive}/invoke", body or {})
    # Meanwhile (the quick ones may be done before their worker is seen executing).
    wait_for(
        lambda: (
            not call.thread.is_alive()
            or any(w["state"] == "executing" for w in workers_of(api, f"hostile_{primitive}"))
        ),
        what=f"hostile_{primitive} executing or answered",
        timeout_s=20,
    )
    subtract_still_works(api)
    response = call.result()
    subtract_still_works(api)
    assert not workers_of(api, f"hostile_{primitive}"), "the hostile worker outlived its invocation"
    return response


def json_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    return json.loads(response.text)
