"""The waterfall, the comparison of two invocations, and the small helpers of the trace views.

The traces are real ones, recorded from the platform (tests/dashboard/traces/*.json: the API's
``GET /invocations/<id>`` of a subtract on a fresh worker, the same on a cold and a warm pooled
worker, slow_count with 3 steps, and a division by zero).
"""

from __future__ import annotations

import itertools
import json
import os
import stat
from pathlib import Path

import pytest

from dashboard.compare import bars_compared
from dashboard.curl import curl_command
from dashboard.schema_forms import fields_filled, form_fields
from dashboard.templatetags.dashboard import inline_markup
from dashboard.traces import event_label, trace_row
from dashboard.waterfall import waterfall
from platform_core.tenancy.devlogin import dev_login_ensure

TRACES = Path(__file__).parent / "traces"


def _recorded(name: str) -> dict:
    return json.loads((TRACES / f"{name}.json").read_text())


def _bars(document: dict) -> dict[str, dict]:
    return {bar["key"]: bar for bar in document["bars"]}


def _offset(trace: list[dict], kind: str) -> float:
    return next(e["offset_ms"] for e in trace if e["kind"] == kind)


def test_a_fresh_workers_waterfall_has_each_phase_and_span_true_to_its_events():
    trace = _recorded("subtract_ephemeral")["trace"]
    document = waterfall(trace, finished=True)
    bars = _bars(document)
    assert [b["key"] for b in document["bars"] if b["depth"] == 1] == [f"phase-{n}" for n in range(1, 8)]
    assert {
        "lookup",
        "allocate",
        "spawn",
        "readiness",
        "connect",
        "init",
        "invoke",
        "step-1",
        "release",
        "stop",
    } <= set(bars)
    # True to time: each span from its opening event to its closing one.
    assert bars["spawn"]["start"] == _offset(trace, "worker_spawning")
    assert bars["spawn"]["end"] == bars["readiness"]["start"] == _offset(trace, "worker_starting")
    assert bars["readiness"]["end"] == _offset(trace, "worker_ready")
    assert bars["init"]["ms"] == pytest.approx(
        _offset(trace, "init_response") - _offset(trace, "init_request"), abs=1e-3
    )
    assert document["total_ms"] == bars["invocation"]["end"] == _offset(trace, "response")
    # Nested where they happen: spawn and readiness inside AllocateWorker, stop inside release.
    assert bars["allocate"]["depth"] == 2 and bars["spawn"]["depth"] == bars["readiness"]["depth"] == 3
    keys = [b["key"] for b in document["bars"]]
    assert keys.index("allocate") < keys.index("spawn") < keys.index("readiness") < keys.index("phase-4")


def test_the_critical_path_covers_the_whole_invocation_and_names_its_biggest_parts():
    document = waterfall(_recorded("subtract_ephemeral")["trace"], finished=True)
    covered = sum(end - start for _, start, end in document["critical"])
    assert covered == pytest.approx(document["total_ms"], rel=1e-3)
    starts = [segment[1] for segment in document["critical"]]
    assert starts == sorted(starts)
    parts = document["path"]
    assert parts[0]["ms"] >= parts[-1]["ms"] and {p["key"] for p in parts} & {"spawn", "readiness", "stop"}
    assert all(0 < p["percent"] <= 100 for p in parts)


def test_progress_steps_are_bars_of_their_own():
    document = waterfall(_recorded("slow_count_3")["trace"], finished=True)
    steps = [b for b in document["bars"] if b["kind"] == "step"]
    assert [s["label"] for s in steps] == ["Step 1", "Step 2", "Step 3", "Finish"]
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(steps))
    assert "Counted 2 of 3" in steps[1]["title"]
    assert any(p["label"] == "3 progress steps" for p in document["path"])  # one part of the path


def test_while_running_open_spans_have_no_end_yet():
    trace = _recorded("slow_count_3")["trace"]
    so_far = [e for e in trace if e["seq"] <= 19]  # invoked, one progress step done
    bars = _bars(waterfall(so_far, finished=False))
    assert bars["invocation"]["end"] is None and bars["phase-5"]["end"] is None and bars["invoke"]["end"] is None
    assert bars["step-1"]["end"] is not None and bars["step-2"]["end"] is None and bars["step-2"]["label"] == "Step 2"
    assert bars["spawn"]["end"] is not None  # what has finished has its end


def test_a_failure_is_marked_on_its_span_and_phase():
    record = _recorded("divide_by_zero")
    bars = _bars(waterfall(record["trace"], finished=True, failed=True))
    assert bars["invoke"]["failed"] and bars["phase-5"]["failed"] and bars["invocation"]["failed"]
    assert not bars["phase-3"]["failed"] and not bars["release"]["failed"]


def test_a_warm_worker_skips_the_start_and_init():
    bars = _bars(waterfall(_recorded("subtract_pooled_warm")["trace"], finished=True))
    assert "spawn" not in bars and "readiness" not in bars and "init" not in bars and "stop" not in bars
    assert "connect" in bars and bars["invoke"]["end"] is not None


def test_comparing_a_cold_and_a_warm_call_marks_what_differs():
    cold = waterfall(_recorded("subtract_pooled_cold")["trace"], finished=True)
    warm = waterfall(_recorded("subtract_pooled_warm")["trace"], finished=True)
    rows = {row.key: row for row in bars_compared(cold, warm)}
    assert rows["spawn"].b_ms is None and rows["spawn"].notable  # only the cold one started a worker
    assert rows["phase-3"].notable and rows["phase-3"].delta_ms < 0 and rows["phase-3"].ratio < 0.5
    assert not rows["phase-1"].notable  # a few hundredths of a ms apart: not worth a mark
    assert "step-1" not in rows  # steps are compared through the Invoke span
    keys = [row.key for row in bars_compared(warm, cold)]  # the cold one's own bars where it had them
    assert keys.index("allocate") < keys.index("spawn") < keys.index("readiness") < keys.index("phase-4")


def test_labels_round_percentages_and_drop_the_worker_id():
    assert event_label("progress", "Progress(16.6667%, 'Counted 1 of 6')") == "Progress(16.7%, 'Counted 1 of 6')"
    assert event_label("progress", "Progress(50%, 'Performing...')") == "Progress(50%, 'Performing...')"
    assert event_label("worker_ready", "worker-20001 ready: Health SERVING after 77 ms") == (
        "ready: Health SERVING after 77 ms"
    )
    row = trace_row({"seq": 3, "phase": 5, "offset_ms": 1.0, "source": "worker", "target": "gateway",
                     "kind": "failed", "detail": "Failed(x)"})  # fmt: skip
    assert row["failure"] and row["label"] == "Failed(x)"


def test_curl_reads_the_key_from_the_shell_and_quotes_the_body():
    command = curl_command(
        base_url="http://127.0.0.1:8080", path="/api/v1/plugins/echo/invoke", arguments={"s": "it's"}
    )
    assert '-H "Authorization: Bearer $API_KEY"' in command
    assert '-d \'{"s": "it\'"\'"\'s"}\'' in command  # the single quote survives the shell
    assert command.startswith("curl -s -X POST http://127.0.0.1:8080/api/v1/plugins/echo/invoke")


def test_a_form_shows_an_earlier_runs_arguments():
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "on": {"type": "boolean"},
            "tags": {"type": "array"},
            "name": {"type": "string", "default": "x"},
        },
    }
    fields = {f.name: f.value for f in fields_filled(form_fields(schema), {"n": 3, "on": False, "tags": ["a"]})}
    assert fields == {"n": "3", "on": "false", "tags": '[\n "a"\n]', "name": ""}


def test_plugin_descriptions_render_inline_code_and_escape_the_rest():
    assert inline_markup("Counts to `steps` **fast** <b>") == (
        "Counts to <code>steps</code> <strong>fast</strong> &lt;b&gt;"
    )


@pytest.mark.django_db
def test_the_development_login_is_made_once_and_kept_in_var(tmp_path):
    made = dev_login_ensure(var_dir=tmp_path)
    assert made is not None and made.username == "dev" and len(made.password) >= 12
    path = tmp_path / "dev_login"
    assert path.read_text() == f"dev\n{made.password}\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "dev" in made.banner and made.password in made.banner and str(path) in made.banner
    again = dev_login_ensure(var_dir=tmp_path)
    assert again == made  # the same login at every start
    from django.contrib.auth import authenticate, get_user_model
    from django.test import RequestFactory

    user = authenticate(RequestFactory().post("/accounts/login/"), username="dev", password=made.password)
    assert user is not None and user.is_staff and user.is_superuser
    path.unlink()  # var/ cleaned: a new password, the same user
    renewed = dev_login_ensure(var_dir=tmp_path)
    assert renewed.password != made.password and get_user_model().objects.filter(username="dev").count() == 1


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_no_development_login_on_a_production_database(tmp_path, settings):
    settings.DATABASES = {"default": {**settings.DATABASES["default"], "ENGINE": "django.db.backends.postgresql"}}
    assert dev_login_ensure(var_dir=tmp_path) is None and not (tmp_path / "dev_login").exists()
