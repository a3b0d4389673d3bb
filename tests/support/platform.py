"""Start a real platform for end-to-end tests: supervisors and a gateway (``manage.py rungateway``) as processes.

Each platform gets its own SQLite file, socket root and free loopback ports, and is torn
down completely: supervisors stop their workers, and ``leftover_workers`` proves it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


def running_worker(api: httpx.Client, plugin: str, timeout_s: float = 20.0) -> dict:
    """The first worker of ``plugin`` that the API lists as executing (polled until ``timeout_s``)."""
    executing: list[dict] = []

    def listed() -> bool:
        supervisors = api.get("/api/v1/workers").json()["supervisors"]
        executing[:] = [
            w for s in supervisors for w in s["workers"] if w["plugin"] == plugin and w["state"] == "executing"
        ]
        return bool(executing)

    wait_for(listed, what=f"an executing {plugin} worker", timeout_s=timeout_s)
    return executing[0]


def killed_mid_invocation(
    platform: Platform, api: httpx.Client, plugin: str, arguments: dict
) -> tuple[httpx.Response, dict]:
    """Invoke ``plugin`` and SIGKILL its worker while it runs: (the response, the worker as listed)."""
    result: dict = {}

    def call() -> None:
        with platform.client() as client:
            result["response"] = client.post(f"/api/v1/plugins/{plugin}/invoke", json=arguments)

    caller = threading.Thread(target=call)
    session = platform.dashboard_session()
    live_url = platform.url.replace("http://", "ws://") + "/ws/live/"
    with connect(live_url, origin=platform.url, additional_headers={"Cookie": f"sessionid={session}"}) as live:
        caller.start()
        worker = running_worker(api, plugin, timeout_s=30)
        # Into its work: the worker's first progress message has reached the live view.
        live_until(live, 'data-kind="progress"', what=f"{plugin}'s first progress message")
        os.kill(worker["pid"], signal.SIGKILL)
    caller.join(timeout=30)
    return result["response"], worker


def live_until(live: ClientConnection, fragment: str, *, what: str, timeout_s: float = 30.0) -> None:
    """Read a dashboard live view (``/ws/live/``) until a message holds ``fragment``."""
    deadline = time.monotonic() + timeout_s
    try:
        while fragment not in str(live.recv(timeout=max(0.0, deadline - time.monotonic()))):
            pass
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s:g} s: {what}") from None


def pids_using(path_fragment: str) -> list[int]:
    """Processes whose command line mentions ``path_fragment`` (our workers' socket paths)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path_fragment in cmdline:
            found.append(int(entry.name))
    return found


@dataclass
class Platform:
    runtimes: tuple[str, ...] = ("python",)
    backend: str = "process"
    extra_env: dict[str, str] = field(default_factory=dict)
    # A runtime listed here is configured in SUPERVISORS but nothing is started for it.
    absent_runtimes: tuple[str, ...] = ("java",)
    # More `runsupervisor` arguments, per runtime.
    supervisor_args: dict[str, list[str]] = field(default_factory=dict)

    # Every work directory made in this test session (tests/conftest.py checks none is left).
    made: ClassVar[list[Path]] = []

    def __post_init__(self) -> None:
        # Short: Unix socket paths are limited to 108 bytes.
        self.workdir = Path(tempfile.mkdtemp(prefix="ppe-", dir="/tmp"))
        Platform.made.append(self.workdir)
        self.socket_root = self.workdir / "s"
        self.http_port = free_port()
        self.supervisor_ports = {runtime: free_port() for runtime in (*self.runtimes, *self.absent_runtimes)}
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {
            **os.environ,
            "PLATFORM_VAR_DIR": str(self.workdir),
            "SQLITE_PATH": str(self.workdir / "db.sqlite3"),
            "SUPERVISORS": ",".join(f"{r}=127.0.0.1:{p}" for r, p in self.supervisor_ports.items()),
            "SUPERVISOR_SOCKET_ROOT": str(self.socket_root),
            "WORKER_BACKEND": self.backend,
            "DJANGO_SECRET_KEY": "e2e-tests",
            # Kept by a gateway restarted with `manage.py rungateway`, which recovers its earlier life.
            "GATEWAY_INSTANCE_ID": f"e2e-gateway-{self.http_port}",
            "LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def add_plugin_variant(self, base: str, name: str, **fields: object) -> None:
        """Register a copy of plugin ``base`` as ``name`` (same worker primitive) with other settings."""
        assignments = "".join(f"s.{key} = {value!r}; " for key, value in fields.items())
        self.manage(
            "shell",
            "-c",
            (
                f"from platform_core.registry.models import PluginSpec as P; s = P.objects.get(name={base!r}); "
                f"s.pk = None; s.primitive = s.primitive or s.name; s.name = {name!r}; s.operation = None; "
                f"{assignments}s.full_clean(); s.save()"
            ),
        )

    def start(self) -> Platform:
        self.manage("migrate", "--noinput", "-v0")
        # A staff key of tenant "e2e" for the tests' HTTP client (tenant scoping tests make their own).
        self.manage(
            "createapikey",
            "--tenant",
            "e2e",
            "--name",
            "e2e tests",
            "--staff",
            "--output",
            str(self.workdir / "api_key"),
        )
        self.api_key = (self.workdir / "api_key").read_text().strip()
        for runtime in self.runtimes:
            self.start_supervisor(runtime)
        self.start_gateway()
        return self

    def start_gateway(self) -> subprocess.Popen:
        """``manage.py rungateway`` (recovery of an earlier life, then the configured server: uvicorn)."""
        log = open(self.workdir / "gateway.log", "ab")  # noqa: SIM115 — lives as long as the process
        gateway = subprocess.Popen(
            [sys.executable, "manage.py", "rungateway", "--bind", "127.0.0.1", "--port", str(self.http_port)],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes["gateway"] = gateway
        wait_for_port(self.http_port, gateway)
        return gateway

    def start_supervisor(self, runtime: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the supervisor of ``runtime`` (``env``: variables that differ from the platform's)."""
        port = self.supervisor_ports[runtime]
        log = open(self.workdir / f"supervisor-{runtime}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "runsupervisor",
                "--runtime",
                runtime,
                "--listen",
                f"127.0.0.1:{port}",
                *self.supervisor_args.get(runtime, []),
            ],
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[f"supervisor-{runtime}"] = process
        wait_for_port(port, process)
        return process

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def stop(self) -> None:
        """Stop every process (supervisors stop their workers), then remove the work directory
        (its database, logs and socket root) unless KEEP_TEST_DIRS=1 asks to keep it."""
        for name in [n for n in self.processes if n != "gateway"] + (
            ["gateway"] if "gateway" in self.processes else []
        ):
            self.stop_process(name)
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def supervisor_id(self, runtime: str) -> str:
        """The id runsupervisor gives itself (RUNTIME-PORT); docker workers carry it as a label."""
        return f"{runtime}-{self.supervisor_ports[runtime]}"

    def leftover_workers(self) -> list[int]:
        return pids_using(str(self.socket_root))

    def client(self, *, api_key: str | None = None, **kwargs) -> httpx.Client:
        """An HTTP client of the gateway that sends the platform's staff API key (or ``api_key``)."""
        headers = {"Authorization": f"Bearer {api_key or self.api_key}", **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, timeout=60, headers=headers, **kwargs)

    def create_user(self, username: str, password: str, *, staff: bool = True) -> None:
        """A dashboard login (idempotent)."""
        self.manage(
            "shell",
            "-c",
            (
                "from django.contrib.auth import get_user_model; U = get_user_model(); "
                f"u, _ = U.objects.get_or_create(username={username!r}); u.is_staff = {staff!r}; "
                f"u.set_password({password!r}); u.save()"
            ),
        )

    def dashboard_session(self, username: str = "live-viewer") -> str:
        """A staff user logged in to the dashboard: the ``sessionid`` cookie (for its live views)."""
        password = f"{username}-password"
        self.create_user(username, password, staff=True)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            form = client.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
            assert token is not None, form.text
            response = client.post(
                "/accounts/login/",
                data={"username": username, "password": password, "csrfmiddlewaretoken": token[1]},
            )
            assert response.status_code == 302, response.text
            return client.cookies["sessionid"]

    def create_api_key(self, tenant: str, *, staff: bool = False) -> str:
        path = self.workdir / f"key-{tenant}-{staff}"
        self.manage(
            "createapikey",
            "--tenant",
            tenant,
            "--name",
            "tests",
            "--output",
            str(path),
            *(["--staff"] if staff else []),
        )
        return path.read_text().strip()

    def staff_session(self, username: str = "staff-viewer", password: str = "viewer-password") -> str:
        """Log a staff user in through the admin; the session cookie (for the dashboard's WebSockets)."""
        self.create_user(username, password, staff=True)
        with httpx.Client(base_url=self.url, timeout=60, follow_redirects=False) as client:
            form = client.get("/admin/login/", params={"next": "/admin/"})
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)[1]
            response = client.post(
                "/admin/login/?next=/admin/",
                data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            )
            if response.status_code != 302:
                raise RuntimeError(f"staff login failed: {response.status_code} {response.text[:200]}")
            return client.cookies["sessionid"]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")
