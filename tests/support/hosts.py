"""Several worker hosts on one machine, for multi-host tests (root only).

Each simulated host is a private mount namespace (``unshare --mount --propagation private``)
with a tmpfs of its own mounted over the socket root, so the gateway cannot see its workers'
sockets, and its supervisors listen on a loopback address of their own (127.0.1.2, ...; all of
127.0.0.0/8 is loopback). Supervisors and gateway speak mutual TLS with certificates from
``manage.py makecerts``. The gateway runs on the machine itself with no supervisor of its own.

A host's namespace lives as long as one of its processes does: when its last supervisor stops,
the kernel drops the namespace and its tmpfs. ``leftover_namespaces`` proves it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from platform_core.certs import write_dev_certs
from tests.support.platform import REPO, Platform, free_port, wait_for_port

# Mount a tmpfs over the socket root ($1) inside the new namespace, then become the supervisor.
_MOUNT_THEN_EXEC = 'mount -t tmpfs -o size=64m,mode=0755 platform-host "$1" && shift && exec "$@"'


@dataclass
class WorkerHost:
    name: str
    ip: str
    runtimes: tuple[str, ...]
    # Certificates of another CA: the gateway must refuse this host.
    impostor: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)

    def address(self, runtime: str) -> str:
        return f"{self.ip}:{self.ports[runtime]}"


@dataclass
class MultiHost(Platform):
    worker_hosts: tuple[WorkerHost, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.socket_root.mkdir(parents=True)
        good, bad = self.workdir / "tls", self.workdir / "tls-impostor"
        names = [host.ip for host in self.worker_hosts]
        write_dev_certs(good, supervisor_names=names)
        write_dev_certs(bad, supervisor_names=names)
        self.tls_dirs = {False: good, True: bad}
        for host in self.worker_hosts:
            host.ports = {runtime: free_port() for runtime in host.runtimes}
        runtimes = dict.fromkeys(r for host in self.worker_hosts for r in host.runtimes)
        self.env.update(
            SUPERVISORS=",".join(
                f"{runtime}="
                + "|".join(host.address(runtime) for host in self.worker_hosts if runtime in host.runtimes)
                for runtime in runtimes
            ),
            PLATFORM_HOST_NAME="gateway-host",
            **self._tls_env(good, "gateway"),
        )

    @staticmethod
    def _tls_env(directory: Path, stem: str) -> dict[str, str]:
        return {
            "SUPERVISOR_TLS_CERT_FILE": str(directory / f"{stem}.crt"),
            "SUPERVISOR_TLS_KEY_FILE": str(directory / f"{stem}.key"),
            "SUPERVISOR_TLS_CA_FILE": str(directory / "ca.crt"),
        }

    def start(self) -> MultiHost:
        super().start()  # migrations, API key, the gateway (no local supervisor: runtimes=())
        for host in self.worker_hosts:
            for runtime in host.runtimes:
                self.start_host_supervisor(host, runtime)
        return self

    def process_name(self, host: WorkerHost, runtime: str) -> str:
        return f"{host.name}-{runtime}"

    def start_host_supervisor(self, host: WorkerHost, runtime: str) -> subprocess.Popen:
        """Start ``runtime``'s supervisor on ``host``: in the namespace of the host's running
        processes, or in a new one (a new tmpfs: the host "rebooted") when none runs."""
        running = [p for p in self._host_processes(host) if p.poll() is None]
        command = [
            sys.executable,
            "manage.py",
            "runsupervisor",
            "--runtime",
            runtime,
            "--listen",
            host.address(runtime),
        ]
        if running:
            prefix = ["nsenter", f"--mount=/proc/{running[0].pid}/ns/mnt", f"--wd={REPO}", "--"]
        else:
            prefix = ["unshare", "--mount", "--propagation", "private", "--"]
            prefix += ["sh", "-c", _MOUNT_THEN_EXEC, "sh", str(self.socket_root)]
        name = self.process_name(host, runtime)
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 — lives as long as the process
        env = {**self.env, **self._tls_env(self.tls_dirs[host.impostor], "supervisor"), "PLATFORM_HOST_NAME": host.name}
        process = subprocess.Popen([*prefix, *command], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes[name] = process
        wait_for_port(host.ports[runtime], process, host=host.ip)
        host.namespaces.add(os.readlink(f"/proc/{process.pid}/ns/mnt"))
        return process

    def _host_processes(self, host: WorkerHost) -> list[subprocess.Popen]:
        return [self.processes[n] for r in host.runtimes if (n := self.process_name(host, r)) in self.processes]

    def leftover_namespaces(self, timeout_s: float = 10.0) -> list[str]:
        """Processes still in a simulated host's mount namespace once ``timeout_s`` has passed
        (a supervisor's children, e.g. its zygote, exit just after it)."""
        ours = {ns for host in self.worker_hosts for ns in host.namespaces}
        deadline = time.monotonic() + timeout_s
        while True:
            found = []
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and os.readlink(entry / "ns" / "mnt") in ours:
                        command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:200]
                        found.append(f"{entry.name}: {command!r}")
                except OSError:
                    continue
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def can_simulate_hosts() -> str:
    """Why hosts cannot be simulated here, or "" when they can."""
    if os.geteuid() != 0:
        return "simulated hosts need root (mount namespaces and tmpfs mounts)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", "mount -t tmpfs none /mnt"],
        capture_output=True,
        text=True,
    )
    return "" if probe.returncode == 0 else f"unshare --mount does not work here: {probe.stderr.strip()}"
