"""SUPERVISORS entries "dns:NAME:PORT": every address the name resolves to is a supervisor."""

from __future__ import annotations

import socket

from platform_core.gateway import supervisor_discovery
from platform_core.gateway.supervisor_discovery import Discovery
from tests.support.waits import wait_for


def test_a_fixed_list_is_used_as_it_is():
    configured = {"python": ["10.0.0.1:9092", "10.0.0.2:9092"]}
    assert Discovery(configured, interval_s=10).supervisors() is configured


def test_a_dns_entry_stands_for_every_address_of_the_name():
    # localhost resolves from /etc/hosts: no query leaves the machine.
    discovery = Discovery({"python": ["dns:localhost:9092", "127.0.1.9:9192"], "java": []}, interval_s=10)
    discovery.refresh()
    python = discovery.supervisors()["python"]
    assert "127.0.0.1:9092" in python and python[-1] == "127.0.1.9:9192"
    assert all(a.endswith(":9092") for a in python[:-1])


def test_a_name_that_stops_resolving_keeps_its_last_answer(monkeypatch, caplog):
    discovery = Discovery({"python": ["dns:localhost:9092"]}, interval_s=10)
    discovery.refresh()
    before = discovery.supervisors()["python"]

    def fail(*args, **kwargs):
        raise socket.gaierror("temporary failure in name resolution")

    monkeypatch.setattr(supervisor_discovery.socket, "getaddrinfo", fail)
    discovery.refresh()
    assert discovery.supervisors()["python"] == before
    assert "does not resolve" in caplog.text


def test_the_gateway_asks_the_discovered_supervisors(settings):
    settings.PLATFORM_SUPERVISORS = {"python": ["dns:localhost:9092"]}
    settings.PLATFORM_SUPERVISOR_DISCOVERY_S = 0.1
    from platform_core.gateway.runtime_client import supervisor_addresses

    # Nothing until the background thread's first answer; then what the name resolves to.
    wait_for(lambda: "127.0.0.1:9092" in supervisor_addresses("python"), what="the dns: entry resolved", timeout_s=5)
