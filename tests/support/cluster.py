"""A scaled-out platform for tests: several gateways and several supervisors per runtime.

Built on ``Platform`` (same work directory, API key, teardown and leftover check); the
processes share whatever database and channel layer ``extra_env`` names (``DATABASE_URL``,
``REDIS_URL``). Gateway 0 and the first supervisor of each runtime are ``Platform``'s own.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import httpx

from tests.support.platform import REPO, Platform, free_port, wait_for_port


@dataclass
class Cluster(Platform):
    gateways: int = 2
    supervisors_per_runtime: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.more_supervisor_ports = {
            runtime: [free_port() for _ in range(self.supervisors_per_runtime - 1)] for runtime in self.runtimes
        }
        self.env["SUPERVISORS"] = ",".join(
            f"{runtime}=" + "|".join(f"127.0.0.1:{p}" for p in self.supervisor_ports_of(runtime))
            for runtime in self.supervisor_ports
        )
        self.gateway_ports = [self.http_port, *(free_port() for _ in range(self.gateways - 1))]

    def supervisor_ports_of(self, runtime: str) -> list[int]:
        return [self.supervisor_ports[runtime], *self.more_supervisor_ports.get(runtime, [])]

    def supervisor_process(self, runtime: str, index: int) -> str:
        """The name in ``processes`` of the runtime's ``index``-th supervisor."""
        return f"supervisor-{runtime}" if index == 0 else f"supervisor-{runtime}-{index}"

    def start(self) -> Cluster:
        super().start()
        for runtime, ports in self.more_supervisor_ports.items():
            for index, port in enumerate(ports, start=1):
                self._start_supervisor_at(runtime, port, self.supervisor_process(runtime, index))
        for index, port in enumerate(self.gateway_ports[1:], start=1):
            self._start_gateway_at(port, f"gateway-{index}")
        return self

    def _start_supervisor_at(self, runtime: str, port: int, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 — lives as long as the process
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runsupervisor", "--runtime", runtime, "--listen", f"127.0.0.1:{port}"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        wait_for_port(port, process)

    def _start_gateway_at(self, port: int, name: str) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rungateway", "--bind", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            # Gateways must not share an instance id: each would take the other's work for its own
            # earlier life's at start.
            env={**self.env, "GATEWAY_INSTANCE_ID": f"127.0.0.1:{port}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        wait_for_port(port, process)

    def gateway_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.gateway_ports[index]}"

    def gateway_client(self, index: int, **kwargs) -> httpx.Client:
        """An HTTP client of gateway ``index`` with the platform's API key."""
        client = self.client(**kwargs)
        client.base_url = httpx.URL(self.gateway_url(index))
        return client
