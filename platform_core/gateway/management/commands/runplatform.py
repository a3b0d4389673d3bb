"""``manage.py runplatform``: the gateway and one supervisor per runtime, in one terminal (``make run``).

Starts each supervisor in SUPERVISORS whose runtime can run here (``runtime_blocker``: a Java
worker needs its jar, ``make java``; a Node worker needs node), waits until each answers, then
starts the gateway (``manage.py rungateway``). A child that dies is started again, at the same
address, after a back-off that grows while it keeps dying (0.5 s up to 30 s), with a log line
each time; meanwhile the gateway answers 503 with Retry-After for the runtime of a supervisor that
is down. Ctrl-C or SIGTERM stops all of them (supervisors stop their workers first).

Local conveniences, never used in production (where the gateway runs alone): the development API
key (``var/dev_api_key``, made once, and always valid against the database in use), and Redis when
one answers on 127.0.0.1:6379 (live events across gateway processes, so one gateway process per
core; ``RUNPLATFORM_REDIS=off`` keeps the in-memory channel layer and one process).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platform_core.tenancy.devlogin import dev_login_ensure

REPO = Path(settings.BASE_DIR)
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
# A child that ran this long before it died starts again at the first back-off.
HEALTHY_AFTER_S = 60.0
LOCAL_REDIS = ("127.0.0.1", 6379)


def runtime_blocker(runtime: str) -> str | None:
    """Why no supervisor of ``runtime`` is started here (not registered, its program or files
    missing), or None when one can run."""
    from platform_core.registry.models import Runtime
    from platform_core.runtimes import unavailable

    entry = Runtime.objects.filter(name=runtime).first()
    if entry is None:
        return "not a runtime of the registry (manage.py runtime add)"
    return unavailable(entry.spec())


def dev_api_key(path: Path) -> str:
    """The API key ``make run`` prints: made once per installation and kept (0600) in ``path``; a
    database that does not know it (a new one, ``DATABASE_URL`` switched) is given it again."""
    from platform_core.tenancy.services import api_key_adopt, api_key_create

    if not path.exists():
        _, key = api_key_create(tenant_slug="default", name="dev key (make run)", is_staff=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        return key
    key = path.read_text().strip()
    api_key_adopt(key=key, tenant_slug="default", name="dev key (make run)", is_staff=True)
    return key


def local_redis() -> str | None:
    """The URL of a Redis answering PING on 127.0.0.1:6379, if one does."""
    try:
        with socket.create_connection(LOCAL_REDIS, timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return f"redis://{LOCAL_REDIS[0]}:{LOCAL_REDIS[1]}/0"
    except OSError:
        pass
    return None


def _wait_for_port(address: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"process for {address} exited with code {process.returncode}")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise CommandError(f"nothing answers on {address} after {timeout_s:.0f} s")


@dataclass
class Child:
    """One process of the platform, kept running."""

    name: str
    command: list[str]
    address: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=REPO, env=self.env)
        self.started, self.restart_at = time.monotonic(), None


class Command(BaseCommand):
    help = "Run the whole platform: supervisors and the gateway, kept running."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080)
        parser.add_argument("--backend", choices=["process", "docker"], help="worker backend of the supervisors")

    def handle(self, *args: Any, bind: str, port: int, backend: str | None, **options: Any) -> None:
        key_file = Path(settings.VAR_DIR) / "dev_api_key"
        dev_api_key(key_file)
        dev_login = dev_login_ensure()  # the dashboard's login, made once (tenancy/devlogin.py)
        env = self._environment()
        children = self._children(bind, port, backend, env)
        stopping: list[int] = []

        def request_stop(signum: int, frame: object) -> None:
            stopping.append(signum)

        # Explicit for both: a shell may start us with SIGINT ignored (background jobs).
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            for child in children:
                child.start()
                assert child.process is not None
                _wait_for_port(child.address, child.process)
            self._greet(bind, port, key_file)
            if dev_login is not None:
                self.stdout.write(dev_login.banner)
            while not stopping:
                self._keep_running(children)
                time.sleep(0.2)
        finally:
            self.stdout.write("stopping the platform")
            self._stop_all(children)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        wanted = not settings.PLATFORM_REDIS_URL and os.environ.get("RUNPLATFORM_REDIS", "auto") != "off"
        if wanted and (url := local_redis()):
            # A prefix of this installation's own: several checkouts on one machine do not meet.
            prefix = "pp-" + hashlib.sha256(str(settings.VAR_DIR).encode()).hexdigest()[:8]
            env.update(REDIS_URL=url, REDIS_PREFIX=prefix)
            self.stdout.write(
                f"using the Redis on {url} (prefix {prefix}) for live events and tenant quotas: one gateway "
                "process per core (RUNPLATFORM_REDIS=off: one process, the in-memory channel layer)"
            )
        return env

    def _children(self, bind: str, port: int, backend: str | None, env: dict[str, str]) -> list[Child]:
        children = []
        for runtime, addresses in settings.PLATFORM_SUPERVISORS.items():
            if (blocker := runtime_blocker(runtime)) is not None:
                self.stderr.write(f"{runtime}: {blocker}; {runtime} plugins will answer 503")
                continue
            for address in addresses:
                command = [sys.executable, "manage.py", "runsupervisor", "--runtime", runtime, "--listen", address]
                children.append(
                    Child(
                        f"supervisor {runtime} ({address})",
                        [*command, *(["--backend", backend] if backend else [])],
                        address,
                        env,
                    )
                )
        # rungateway: first what an earlier life left running is marked interrupted, then the server.
        command = [sys.executable, "manage.py", "rungateway", "--bind", bind, "--port", str(port)]
        children.append(Child("gateway", command, f"{bind}:{port}", env))
        return children

    def _greet(self, bind: str, port: int, key_file: Path) -> None:
        self.stdout.write(
            self.style.SUCCESS(
                f"platform up: http://{bind}:{port}/  (API under /api/v1/, admin under /admin/); Ctrl-C stops it"
            )
        )
        self.stdout.write(
            f"API key of tenant 'default' in {key_file}; try:\n"
            f'  curl -s -XPOST {bind}:{port}/api/v1/calculate/subtract -H "Authorization: Bearer $(cat {key_file})"'
            " -H 'content-type: application/json' -d '{\"operand1\": 10, \"operand2\": 5}'"
        )

    def _keep_running(self, children: list[Child]) -> None:
        """Start again (after its back-off) every child that died."""
        now = time.monotonic()
        for child in children:
            assert child.process is not None
            if child.restart_at is None and child.process.poll() is not None:
                if now - child.started >= HEALTHY_AFTER_S:
                    child.backoff_s = BACKOFF_FIRST_S
                child.restart_at = now + child.backoff_s
                self.stderr.write(
                    f"{child.name} exited with code {child.process.returncode}; starting it again in "
                    f"{child.backoff_s:g} s at {child.address}"
                )
                child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start()
                self.stderr.write(f"{child.name} started again (restart {child.restarts})")

    def _stop_all(self, children: list[Child]) -> None:
        running = [c.process for c in reversed(children) if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
