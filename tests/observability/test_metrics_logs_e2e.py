"""Prometheus metrics and JSON logs of a real platform, read as Prometheus and a log shipper would.

``/metrics`` is parsed with ``prometheus_client.parser`` before and after a few invocations: the
counters and histograms move by what happened, a refused request (429) moves the refusal counter,
the supervisors' availability shows. The supervisor's own ``--metrics-port`` shows its workers and
pools. With ``LOG_FORMAT=json`` the gateway writes one JSON object per line, the invocation's ids
on the lines about it.
"""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.platform import Platform, free_port
from tests.support.waits import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def metered():
    metrics_port = free_port()
    platform = Platform(
        runtimes=("python",),
        extra_env={"LOG_FORMAT": "json", "INVOCATION_LOG": "1", "LOG_LEVEL": "INFO"},
        supervisor_args={"python": ["--metrics-port", str(metrics_port)]},
    ).start()
    platform.metrics_port = metrics_port
    platform.add_plugin_variant(
        "subtract_numbers", "subtract_metered", mode="pooled", min_idle=1, max_workers=1, max_concurrency=2
    )
    # A tenant allowed one invocation in a burst and (practically) nothing after it.
    tight = platform.create_api_key("tight")
    platform.manage(
        "shell",
        "-c",
        "from platform_core.tenancy.models import Tenant; Tenant.objects.filter(slug='tight')"
        ".update(rate_per_s=0.001, burst=1)",
    )
    platform.tight_key = tight
    yield platform
    platform.stop()


def scrape(url: str, **kwargs) -> dict[tuple[str, tuple], float]:
    """Every sample of the exposition at ``url``, by (name, sorted labels)."""
    answer = httpx.get(url, timeout=30, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_invocations_move_the_counters_and_histograms(metered):
    before = scrape(f"{metered.url}/metrics")
    with metered.client() as api:
        for _ in range(3):
            assert api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}).status_code == 200
        for _ in range(2):
            assert (
                api.post("/api/v1/plugins/subtract_metered/invoke", json={"operand1": 3, "operand2": 1}).status_code
                == 200
            )
        assert api.post("/api/v1/calculate/divide", json={"operand1": 1, "operand2": 0}).status_code == 502
        assert api.post("/api/v1/calculate/nosuch", json={}).status_code == 404
    after = scrape(f"{metered.url}/metrics")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"status": "succeeded", "http_status": "200"}
    assert moved("platform_invocations_total", plugin="subtract_numbers", **ok) == 3
    assert moved("platform_invocations_total", plugin="subtract_metered", **ok) == 2
    assert moved("platform_invocations_total", plugin="divide_numbers", status="failed", http_status="502") == 1
    # A name that is no plugin counts without a plugin label value (client input never becomes a label).
    assert moved("platform_invocations_total", plugin="", status="rejected", http_status="404") == 1
    for phase in ("allocation", "init", "execution", "release", "total"):
        labels = {"plugin": "subtract_numbers", "mode": "ephemeral", "phase": phase}
        assert moved("platform_invocation_phase_seconds_count", **labels) == 3, phase
        assert moved("platform_invocation_phase_seconds_sum", **labels) > 0, phase
    assert (
        moved("platform_invocation_phase_seconds_count", plugin="subtract_metered", mode="pooled", phase="total") == 2
    )
    # The slowest bucket holds them all; a 1 ms bucket not the ephemeral ones (a worker starts).
    total = {"plugin": "subtract_numbers", "mode": "ephemeral", "phase": "total"}
    assert moved("platform_invocation_phase_seconds_bucket", le="+Inf", **total) == 3
    # Supervisors as the gateway sees them: python up (with its pooled worker), java configured but down.
    assert (
        value(
            after, "platform_supervisor_up", runtime="python", address=f"127.0.0.1:{metered.supervisor_ports['python']}"
        )
        == 1
    )
    assert (
        value(after, "platform_supervisor_up", runtime="java", address=f"127.0.0.1:{metered.supervisor_ports['java']}")
        == 0
    )
    assert any(
        name == "platform_supervisor_workers" and dict(labels).get("plugin") == "subtract_metered"
        for name, labels in after
    )
    # The pooled seat this gateway keeps.
    assert (
        value(after, "platform_gateway_seats", plugin="subtract_metered", state="idle")
        + value(after, "platform_gateway_seats", plugin="subtract_metered", state="busy")
        >= 1
    )


def test_a_refused_request_moves_the_refusal_counter(metered):
    before = scrape(f"{metered.url}/metrics")
    with metered.client(api_key=metered.tight_key) as api:
        statuses = [
            api.post("/api/v1/calculate/subtract", json={"operand1": 1, "operand2": 1}).status_code for _ in range(3)
        ]
    assert statuses.count(429) == 2, statuses
    after = scrape(f"{metered.url}/metrics")
    refused = ("platform_admission_refusals_total", (("reason", "rate_limited"), ("tenant", "tight")))
    assert after.get(refused, 0) - before.get(refused, 0) == 2
    throttled = ("platform_invocations_total", (("http_status", "429"), ("plugin", ""), ("status", "throttled")))
    assert after[throttled] - before.get(throttled, 0) == 2


def test_the_supervisor_serves_its_own_metrics(metered):
    with metered.client() as api:
        assert api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}).status_code == 200
    samples = scrape(f"http://127.0.0.1:{metered.metrics_port}/metrics")
    supervisor = metered.supervisor_id("python")
    base = {"runtime": "python", "supervisor": supervisor}
    assert value(samples, "platform_worker_slots", **base) > 0
    assert value(samples, "platform_allocations_total", plugin="subtract_numbers", outcome="cold") >= 1
    assert value(samples, "platform_worker_start_seconds_count", plugin="subtract_numbers", backend="process") >= 1
    pool = {**base, "plugin": "subtract_metered"}
    assert value(samples, "platform_pool_max_workers", **pool) == 1
    assert sum(value(samples, "platform_pool_workers", **pool, state=s) for s in ("idle", "busy")) == 1
    assert value(samples, "platform_pool_queue", **pool) == 0
    assert any(
        name == "platform_workers" and dict(labels).get("plugin") == "subtract_metered" for name, labels in samples
    )
    assert httpx.get(f"http://127.0.0.1:{metered.metrics_port}/other").status_code == 404


def test_json_log_lines_carry_the_invocations_ids(metered):
    with metered.client(headers={"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}) as api:
        answer = api.post("/api/v1/calculate/subtract", json={"operand1": 3, "operand2": 1}).json()

    def line_about_it() -> dict | None:
        for line in metered.log("gateway").splitlines():
            if line.startswith("{") and answer["invocation_id"] in line:
                return json.loads(line)
        return None

    wait_for(line_about_it, what="the invocation's log line")
    entry = line_about_it()
    assert entry["invocation_id"] == answer["invocation_id"]
    assert entry["trace_id"] == "a" * 32  # the caller's trace, though this gateway exports no spans
    assert entry["tenant_id"] == "e2e"
    assert entry["worker_id"] == answer["worker_id"]
    assert entry["logger"] == "platform_core.invocations.access" and entry["level"] == "info"
    assert entry["http_status"] == 200 and entry["status"] == "succeeded"
    # Every line the gateway's logging wrote is one JSON object.
    logged = [line for line in metered.log("gateway").splitlines() if line.startswith("{")]
    assert logged and all(isinstance(json.loads(line), dict) for line in logged)


def test_two_gateway_processes_on_one_port_show_the_same_sums():
    """rungateway with GATEWAY_PROCESSES=2 sets up multiprocess mode: whichever process answers
    /metrics, the invocations of both are counted."""
    platform = Platform(runtimes=("python",), extra_env={"GATEWAY_PROCESSES": "2"}).start()
    try:
        with platform.client() as client:
            for operand in range(8):
                answer = client.post("/api/v1/calculate/subtract", json={"operand1": operand, "operand2": 1})
                assert answer.status_code == 200, answer.text
        seen = set()
        for _ in range(6):  # new connections: either process may answer each
            samples = scrape(f"{platform.url}/metrics", headers={"Connection": "close"})
            seen.add(
                value(
                    samples,
                    "platform_invocations_total",
                    plugin="subtract_numbers",
                    status="succeeded",
                    http_status="200",
                )
            )
        assert seen == {8.0}
        assert (platform.workdir / f"prometheus-{platform.http_port}").is_dir()
    finally:
        platform.stop()
