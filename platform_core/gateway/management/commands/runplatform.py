"""``manage.py runplatform``: the gateway (daphne) and one supervisor per runtime, in one terminal.

Starts each supervisor in SUPERVISORS whose runtime can run here (Java needs its worker jar:
``make java``), waits until each answers, then starts daphne. Ctrl-C or SIGTERM stops all of
them (supervisors stop their workers first).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from dashboard.devlogin import dev_login_ensure

REPO = Path(settings.BASE_DIR)
JAVA_JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"


def _wait_for_port(address: str, process: subprocess.Popen, timeout_s: float = 30.0) -> None:
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


class Command(BaseCommand):
    help = "Run the whole platform: supervisors and the gateway (daphne)."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1", help="gateway address (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080)
        parser.add_argument("--backend", choices=["process", "docker"], help="worker backend of the supervisors")

    def _dev_key(self) -> str:
        """The API key `make run` prints: made once per installation, kept (0600) in var/dev_api_key."""
        path = Path(settings.VAR_DIR) / "dev_api_key"
        if not path.exists():
            from platform_core.tenancy.services import api_key_create

            _, key = api_key_create(tenant_slug="default", name="dev key (make run)", is_staff=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(key + "\n")
        return path.read_text().strip()

    def handle(self, *args, bind: str, port: int, backend: str | None, **options):
        children: list[tuple[str, subprocess.Popen]] = []
        key_file = Path(settings.VAR_DIR) / "dev_api_key"
        self._dev_key()
        dev_login = dev_login_ensure()  # the dashboard's login, made once (dashboard/devlogin.py)

        def stop_all(*_: object) -> None:
            for _name, child in reversed(children):
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for _name, child in reversed(children):
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()

        stopping = []

        def request_stop(signum: int, frame: object) -> None:
            stopping.append(signum)

        # Explicit for both: a shell may start us with SIGINT ignored (background jobs).
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            for runtime, addresses in settings.PLATFORM_SUPERVISORS.items():
                if runtime == "java" and not JAVA_JAR.exists():
                    self.stderr.write(
                        f"java: {JAVA_JAR.relative_to(REPO)} is missing (run `make java`); java plugins will answer 503"
                    )
                    continue
                for address in addresses:
                    command = [sys.executable, "manage.py", "runsupervisor", "--runtime", runtime, "--listen", address]
                    if backend:
                        command += ["--backend", backend]
                    child = subprocess.Popen(command, cwd=REPO)
                    children.append((f"supervisor {runtime}", child))
                    _wait_for_port(address, child)
            gateway = subprocess.Popen(
                # rungateway: first what an earlier life left running is marked interrupted, then daphne.
                [sys.executable, "manage.py", "rungateway", "--bind", bind, "--port", str(port)],
                cwd=REPO,
            )
            children.append(("gateway", gateway))
            _wait_for_port(f"{bind}:{port}", gateway)
            self.stdout.write(
                self.style.SUCCESS(
                    f"platform up: http://{bind}:{port}/  (API under /api/v1/, admin under /admin/); Ctrl-C stops it"
                )
            )
            if dev_login is not None:
                self.stdout.write(dev_login.banner)
            self.stdout.write(
                f"API key of tenant 'default' in {key_file}; try:\n"
                f'  curl -s -XPOST {bind}:{port}/api/v1/calculate/subtract -H "Authorization: Bearer $(cat {key_file})"'
                " -H 'content-type: application/json' -d '{\"operand1\": 10, \"operand2\": 5}'"
            )
            while not stopping and all(child.poll() is None for _, child in children):
                time.sleep(0.2)
            for name, child in children:
                if child.returncode is not None:
                    self.stderr.write(f"{name} exited with code {child.returncode}; stopping the platform")
        finally:
            self.stdout.write("stopping the platform")
            stop_all()
