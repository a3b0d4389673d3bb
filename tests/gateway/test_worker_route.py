"""Host identity and the gateway's choice between a worker's socket and its supervisor's relay."""

from __future__ import annotations

import pytest

from platform_core.gateway import worker_route as routes
from platform_core.rpc.host_identity import LocalHost, derived_host_id


def test_the_derived_host_id_follows_the_socket_directory(tmp_path):
    one, other = tmp_path / "one", tmp_path / "other"
    assert derived_host_id(str(one)) is None  # nothing to share yet
    one.mkdir()
    other.mkdir()
    assert derived_host_id(str(one)) != derived_host_id(str(other))
    # A symbolic link to the same directory is the same view.
    (tmp_path / "link").symlink_to(one)
    assert derived_host_id(str(tmp_path / "link")) == derived_host_id(str(one))


def test_a_local_host_waits_for_its_socket_root_and_sees_only_its_own_id(tmp_path):
    host = LocalHost(socket_root=str(tmp_path / "later"), name="host-a")
    assert host.id == "h-no-socket-root" and not host.sees(derived_host_id(str(tmp_path)) or "x")
    (tmp_path / "later").mkdir()
    assert host.id == derived_host_id(str(tmp_path / "later"))
    assert host.sees(host.id) and host.sees("")  # "": a supervisor from before host ids
    assert LocalHost(socket_root="/nonexistent", explicit_id="rack-7").id == "rack-7"


@pytest.fixture
def on_host(monkeypatch, settings):
    settings.PLATFORM_SUPERVISOR_SECRET = ""
    settings.PLATFORM_SUPERVISOR_TLS = None
    monkeypatch.setattr(routes, "local_host", lambda: LocalHost(socket_root="/", explicit_id="host-a"))


def route(host_id: str, *, relay_port: int = 9093, worker_id: str = "worker-20001") -> routes.WorkerRoute:
    return routes.worker_route(
        worker_id=worker_id,
        address="unix:///tmp/ppp/w.sock",
        host_id=host_id,
        host_name="node-b",
        supervisor="127.0.1.2:9092",
        relay_port=relay_port,
    )


def test_a_worker_on_this_host_is_reached_on_its_socket(on_host):
    direct = route("host-a")
    assert (direct.target, direct.relay, direct.relayed) == ("unix:///tmp/ppp/w.sock", None, False)
    assert direct.description == "direct unix socket unix:///tmp/ppp/w.sock"
    # A supervisor without a relay (older) can only have been on this host.
    assert not route("host-b", relay_port=0).relayed


def test_a_worker_elsewhere_is_reached_through_its_supervisors_relay(on_host):
    relayed = route("host-b")
    assert relayed.relayed and relayed.relay == "127.0.1.2:9093"  # the host the gateway dials, the relay's port
    assert relayed.target == "worker-20001.ppp-relay:1"
    assert relayed.description == (
        "relay via supervisor 127.0.1.2:9092 (relay 127.0.1.2:9093) to worker-20001 on node-b"
    )
    # Each worker has its own channel and PPP session.
    assert route("host-b", worker_id="worker-20002").key != relayed.key
