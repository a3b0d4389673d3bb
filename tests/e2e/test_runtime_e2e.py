"""A language added at run time, with no platform code touched: `manage.py runtime add` with a
worker written from the proto alone, a plugin naming it, its supervisor (which cannot even read
the database: the recipe comes with each allocation), and an invocation over HTTP."""

from __future__ import annotations

import pytest

from tests.support.platform import Platform

pytestmark = pytest.mark.e2e

WORKER = (
    "{python} {root}/tests/support/proto_worker.py --proto {root}/protos/plugin_protocol.proto "
    "--unix {socket} --max-concurrency {concurrency}"
)


@pytest.fixture(scope="module")
def shout_platform():
    # "shout" is listed in SUPERVISORS from the start, like a line an operator adds to the config.
    running = Platform(runtimes=("python",), absent_runtimes=("shout",)).start()
    yield running
    running.stop()
    assert not running.leftover_workers()


def test_a_runtime_added_at_run_time_is_started_and_invoked_over_http(shout_platform):
    platform = shout_platform
    added = platform.manage("runtime", "add", "shout", "--command", WORKER, "--description", "proto-only worker")
    assert "runtime shout added" in added
    platform.manage(
        "shell",
        "-c",
        "from platform_core.registry.models import PluginSpec as P; "
        "s = P(name='shout', runtime_id='shout', entrypoint='shout', input_schema={'type': 'object'}, "
        "output_schema={'type': 'object', 'required': ['text']}); s.full_clean(); s.save()",
    )
    # No database for this supervisor: it must start workers from the recipe in the request.
    platform.start_supervisor("shout", env={"SQLITE_PATH": "/nonexistent/dir/db.sqlite3"})

    with platform.client() as api:
        response = api.post("/api/v1/plugins/shout/invoke", json={"text": "any language"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["result"] == {"text": "ANY LANGUAGE", "length": 12}
        stored = api.get(f"/api/v1/invocations/{body['invocation_id']}").json()
        assert stored["runtime"] == "shout"
        assert any(e["kind"] == "progress" for e in stored["trace"])
        refused = api.post("/api/v1/plugins/shout/invoke", json={"text": 42})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_input"
    assert "cannot read the registry" in platform.log("supervisor-shout")
    assert "shout" in platform.manage("runtime", "list")


def test_runtime_add_refuses_a_command_without_socket(shout_platform):
    with pytest.raises(RuntimeError, match=r"put \{socket\} where the socket path goes"):
        shout_platform.manage("runtime", "add", "nosock", "--command", "my-worker --listen 127.0.0.1:1")
