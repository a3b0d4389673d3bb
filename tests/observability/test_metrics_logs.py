"""Metrics counting, who may scrape, and the log formats (fast, in process)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from platform_core.observability import logs, metrics

REPO = Path(__file__).resolve().parents[2]


def _sample(name: str, **labels: str) -> float:
    body, _ = metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_one_invocation_counts_once_with_each_phase():
    labels = {"plugin": "unit_plugin", "status": "succeeded", "http_status": "200"}
    before = _sample("platform_invocations_total", **labels)
    timings = {"allocation": 1.0, "init": None, "execution": 2.0, "release": 0.5, "total": 4.0}
    metrics.invocation_count(
        plugin="unit_plugin", mode="pooled", status="succeeded", http_status=200, timings_ms=timings
    )
    assert _sample("platform_invocations_total", **labels) == before + 1
    phase = {"plugin": "unit_plugin", "mode": "pooled"}
    assert _sample("platform_invocation_phase_seconds_sum", **phase, phase="total") >= 0.004
    # A phase the invocation did not go through (init of a warm seat) is not observed.
    assert _sample("platform_invocation_phase_seconds_count", **phase, phase="init") == 0


def test_a_refusal_is_counted_by_tenant_and_reason():
    before = _sample("platform_admission_refusals_total", tenant="t1", reason="too_many_concurrent")
    metrics.invocation_count(
        plugin="",
        mode="",
        status="throttled",
        http_status=429,
        timings_ms={},
        refusal="too_many_concurrent",
        tenant="t1",
    )
    assert _sample("platform_admission_refusals_total", tenant="t1", reason="too_many_concurrent") == before + 1


@pytest.mark.parametrize(
    ("token", "authorization", "client", "allowed"),
    [
        ("", "", "127.0.0.1", True),
        ("", "", "127.0.1.2", True),
        ("", "", "::1", True),
        ("", "", "10.0.0.5", False),
        ("", "", "", False),
        ("s3cret", "", "127.0.0.1", False),  # with a token, loopback needs it too
        ("s3cret", "Bearer s3cret", "10.0.0.5", True),
        ("s3cret", "bearer s3cret", "10.0.0.5", True),
        ("s3cret", "Bearer wrong", "10.0.0.5", False),
    ],
)
def test_who_may_scrape(token, authorization, client, allowed):
    assert metrics.scrape_allowed(token=token, authorization=authorization, client_host=client) is allowed


@pytest.mark.django_db
def test_the_metrics_view_refuses_remote_scrapers_in_the_error_shape(client, settings):
    answer = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "forbidden"
    settings.PLATFORM_METRICS_TOKEN = "s3cret"
    answer = client.get("/metrics", REMOTE_ADDR="192.0.2.7")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"
    answer = client.get("/metrics", REMOTE_ADDR="192.0.2.7", HTTP_AUTHORIZATION="Bearer s3cret")
    assert answer.status_code == 200
    assert "platform_invocations_total" in answer.content.decode() or "platform_invocations" in answer.content.decode()
    names = {family.name for family in text_string_to_metric_families(answer.content.decode())}
    assert {"platform_supervisor_up", "platform_invocation_phase_seconds"} <= names


def test_several_gateway_processes_are_summed_in_multiprocess_mode(tmp_path):
    """Two processes count into PROMETHEUS_MULTIPROC_DIR; a third one's exposition has the sum."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "platform_core.settings"}
    count = (
        "from platform_core.observability import metrics;"
        "metrics.invocation_count(plugin='mp', mode='pooled', status='succeeded', http_status=200,"
        " timings_ms={'total': 3.0})"
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], cwd=REPO, env=env, check=True)
    show = "from platform_core.observability import metrics; print(metrics.exposition()[0].decode())"
    out = subprocess.run([sys.executable, "-c", show], cwd=REPO, env=env, check=True, capture_output=True, text=True)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }
    key = ("platform_invocations_total", (("http_status", "200"), ("plugin", "mp"), ("status", "succeeded")))
    assert samples[key] == 2
    total = (("le", "+Inf"), ("mode", "pooled"), ("phase", "total"), ("plugin", "mp"))
    assert samples[("platform_invocation_phase_seconds_bucket", total)] == 2


def _record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("platform_core.test", logging.WARNING, __file__, 1, message, args or ("you",), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_bound_invocation_and_nothing_after_it_ended():
    formatter, stamp = logs.JsonFormatter(), logs.InvocationFilter()
    record = _record()
    stamp.filter(record)
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "hello you" and entry["level"] == "warning" and entry["logger"] == "platform_core.test"
    assert "invocation_id" not in entry  # not about an invocation
    assert entry["time"].endswith("Z")

    def inside() -> tuple[dict, dict]:
        bound = logs.invocation_bind(invocation_id="inv-9", tenant_id="acme", trace_id="ab" * 16)
        bound.worker_id = "worker-7"
        during = _record()
        stamp.filter(during)
        bound.ended = True
        after = _record()
        stamp.filter(after)
        return json.loads(formatter.format(during)), json.loads(formatter.format(after))

    import contextvars

    during, after = contextvars.copy_context().run(inside)
    assert during["invocation_id"] == "inv-9" and during["tenant_id"] == "acme"
    assert during["trace_id"] == "ab" * 16 and during["worker_id"] == "worker-7"
    assert "invocation_id" not in after


def test_json_lines_keep_exceptions_and_extra_fields_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(exc_info=sys.exc_info(), status="failed")
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["status"] == "failed" and "ValueError: boom" in entry["exception"]


def test_text_stays_readable_with_the_ids_in_brackets():
    record = _record()
    record.invocation_id, record.tenant_id = "inv-1", "acme"
    text = logs.TextFormatter().format(record)
    assert text.endswith("WARNING platform_core.test: hello you [invocation_id=inv-1 tenant_id=acme]")
    assert not logs.TextFormatter().format(_record()).endswith("]")


def test_a_supervisor_serves_metrics_beyond_loopback_only_with_a_token(settings):
    from django.core.management import CommandError, call_command

    settings.PLATFORM_METRICS_TOKEN = ""
    with pytest.raises(CommandError, match="METRICS_TOKEN"):
        call_command("runsupervisor", runtime="python", listen="127.0.0.1:1", metrics_listen="0.0.0.0:9102")


def test_observability_never_costs_an_invocation_its_answer(monkeypatch):
    from platform_core.invocations.trace import Trace
    from platform_core.observability import invocations
    from platform_core.tenancy.callers import Caller

    def broken(**kwargs: object) -> None:
        raise RuntimeError("a bug in counting")

    monkeypatch.setattr(metrics, "invocation_count", broken)
    bound = logs.InvocationLog("inv-1", "acme")
    invocations.invocation_end(
        trace=Trace("inv-1", publish=False),
        bound=bound,
        caller=Caller(),
        plugin=None,
        status="succeeded",
        http_status=200,
        timings_ms={},
    )
    assert bound.ended
