"""deploy/grafana/: the dashboard reads only metrics that the gateways and supervisors expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from platform_core.observability import metrics
from platform_core.supervisor.backends.process import ProcessBackend
from platform_core.supervisor.service import Supervisor

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "plugin-platform.json"
SUFFIXES = re.compile(r"_(total|bucket|sum|count|created)$")


def _families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def exposed() -> set[str]:
    """Every metric family a gateway's /metrics and a supervisor's --metrics-port can show."""
    gateway, _ = metrics.exposition(metrics.supervisor_families([{"runtime": "python", "address": "a", "up": True}]))
    backend = ProcessBackend(supervisor_id="python-t", socket_root=Path("/tmp/ppp-unused"))
    supervisor = Supervisor(
        runtime="python", supervisor_id="python-t", backends={"process": backend}, default_backend="process"
    )
    own = metrics.generate_latest(metrics.supervisor_registry(supervisor)).decode()
    return _families(gateway.decode()) | _families(own)


def test_every_metric_of_the_dashboard_is_exposed():
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    used = {
        SUFFIXES.sub("", name) for text in expressions + variables for name in re.findall(r"platform_[a-z_]+", text)
    }
    assert used, "the dashboard reads no platform metric"
    missing = used - exposed()
    assert not missing, f"the dashboard reads metrics nobody exposes: {sorted(missing)}"


def test_the_dashboard_covers_what_the_issue_asks():
    text = DASHBOARD.read_text()
    for needed in (
        "platform_invocations_total",  # invocations by plugin, status, HTTP status
        'phase=\\"total\\"',  # end-to-end latency (JSON-escaped quotes)
        "platform_admission_refusals_total",
        "platform_supervisor_up",
        "platform_workers",
        "platform_pool_workers",
        "platform_pool_queue",
    ):
        assert needed in text, needed
    assert {panel["id"] for panel in json.loads(text)["panels"]} == set(range(1, len(json.loads(text)["panels"]) + 1))
