"""The ``process`` backend: each worker is a local child process.

Isolation on this backend: its own session and process group (so a stop reaches every
process it started), a private socket directory (mode 0700) that is also its HOME and
TMPDIR, a scrubbed environment (no secrets of the supervisor leak into plugins), rlimits
(address space, CPU seconds, open files, file size, no core dumps) applied by ``prlimit``
before the worker's program runs, and death with its parent (PR_SET_PDEATHSIG, set by the
worker SDK when PPP_PARENT_PID is given). Network isolation and pids limits need the docker
backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from platform_core.supervisor.backends import Emit, WorkerStartError
from platform_core.supervisor.model import PluginRef, State, Worker

REPO = Path(__file__).resolve().parents[3]
SOCKET_NAME = "worker.sock"


@dataclass
class Launcher:
    """How to run a worker program of one runtime."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    # Address-space rlimits break runtimes that reserve large virtual ranges (the JVM).
    limit_address_space: bool = True

    def command(self, plugin: PluginRef, socket: Path) -> list[str]:
        values = {
            "concurrency": str(plugin.pool.max_concurrency if plugin.pool else 1),
            "entrypoint": plugin.entrypoint,
            "socket": str(socket),
            "heap_mb": str(max(plugin.limits.memory_bytes // (2 * 1024 * 1024), 32)),
        }
        return [part.format(**values) for part in self.argv]


def default_launchers() -> dict[str, Launcher]:
    python_root = REPO / "plugin_workers" / "python"
    java_jar = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
    return {
        "python": Launcher(
            argv=[
                sys.executable,
                "-s",
                "-m",
                "ppp_sdk",
                "{entrypoint}",
                "--unix",
                "{socket}",
                "--max-concurrency",
                "{concurrency}",
            ],
            cwd=python_root,
            env={
                "PYTHONPATH": str(python_root),
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                # glibc gives every thread its own 64 MiB malloc arena, which eats an address-space limit.
                "MALLOC_ARENA_MAX": "2",
            },
        ),
        "java": Launcher(
            argv=[
                shutil.which("java") or "java",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-XX:-UsePerfData",
                "-Xss512k",
                "-Xmx{heap_mb}m",
                "-XX:MaxMetaspaceSize=64m",
                "-jar",
                str(java_jar),
                "--service",
                "{entrypoint}",
                "--unix",
                "{socket}",
            ],
            cwd=REPO,
            limit_address_space=False,
        ),
    }


class ProcessBackend:
    name = "process"

    def __init__(
        self,
        *,
        supervisor_id: str,
        socket_root: Path,
        launchers: dict[str, Launcher] | None = None,
        output_limit: int = 64 * 1024,
    ) -> None:
        self.supervisor_id = supervisor_id
        self.socket_root = Path(socket_root) / supervisor_id
        self.launchers = launchers if launchers is not None else default_launchers()
        self.output_limit = output_limit
        self._prlimit = shutil.which("prlimit")

    async def start(self, worker: Worker, emit: Emit) -> Path:
        launcher = self.launchers.get(worker.plugin.runtime)
        if launcher is None:
            raise WorkerStartError(f"this supervisor cannot run {worker.plugin.runtime!r} workers")
        if not worker.plugin.entrypoint:
            raise WorkerStartError(f"plugin {worker.plugin.name!r} has no entrypoint")
        self.socket_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        directory = Path(tempfile.mkdtemp(prefix=f"{worker.worker_id}-", dir=self.socket_root))
        worker.runtime_state["directory"] = directory
        socket = directory / SOCKET_NAME
        argv = self._limits(worker, launcher) + launcher.command(worker.plugin, socket)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(directory),
            "TMPDIR": str(directory),
            "LANG": "C.UTF-8",
            "PPP_PARENT_PID": str(os.getpid()),
            "PPP_WORKER_ID": worker.worker_id,
            **launcher.env,
        }
        emit(worker, State.SPAWNING, f"spawn process: {' '.join(argv[-5:])}")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=launcher.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise WorkerStartError(f"cannot start {argv[0]}: {exc}") from exc
        worker.pid = process.pid
        # Remembered so that a restarted supervisor can find workers a crash left behind.
        (directory / "worker.pid").write_text(f"{process.pid} {_start_time(process.pid)}\n")
        worker.address = f"unix://{socket}"
        worker.runtime_state["process"] = process
        worker.runtime_state["pump"] = asyncio.create_task(self._pump(process, worker))
        emit(worker, State.STARTING, f"process started, pid {process.pid}")
        return socket

    def _limits(self, worker: Worker, launcher: Launcher) -> list[str]:
        if not self._prlimit:
            return []
        limits = worker.plugin.limits
        args = [self._prlimit, "--core=0", "--nofile=1024", f"--fsize={256 * 1024 * 1024}"]
        if launcher.limit_address_space and limits.memory_bytes:
            args.append(f"--as={limits.memory_bytes}")
        if limits.cpu_seconds:
            args.append(f"--cpu={limits.cpu_seconds}")
        return [*args, "--"]

    async def _pump(self, process: asyncio.subprocess.Process, worker: Worker) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            worker.output.feed(chunk)

    def exit_code(self, worker: Worker) -> int | None:
        process = worker.runtime_state.get("process")
        return None if process is None else process.returncode

    async def wait(self, worker: Worker) -> int:
        process: asyncio.subprocess.Process | None = worker.runtime_state.get("process")
        if process is None:  # never started
            return -1
        code = await process.wait()
        # Let the output pump drain what the worker wrote last.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(worker.runtime_state["pump"]), 1.0)
        return code

    def _signal(self, worker: Worker, signum: int) -> None:
        if not worker.pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signum)

    async def stop(self, worker: Worker, *, grace_s: float) -> int:
        if self.exit_code(worker) is None:
            self._signal(worker, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.wait(worker)), grace_s)
            except TimeoutError:
                self._signal(worker, signal.SIGKILL)
        return await self._remove(worker)

    async def kill(self, worker: Worker) -> int:
        self._signal(worker, signal.SIGKILL)
        return await self._remove(worker)

    async def _remove(self, worker: Worker) -> int:
        code = await self.wait(worker)
        # Whatever the worker left running in its group goes too.
        self._signal(worker, signal.SIGKILL)
        if directory := worker.runtime_state.get("directory"):
            shutil.rmtree(directory, ignore_errors=True)
        return code

    async def reap_orphans(self) -> int:
        """Kill the workers an earlier life of this supervisor left behind; remove their directories.

        Workers normally die with their supervisor (PR_SET_PDEATHSIG); this catches the rest.
        A pid is only killed if its start time still matches: pids are reused.
        """
        if not self.socket_root.is_dir():
            return 0
        killed = 0
        for directory in self.socket_root.iterdir():
            with contextlib.suppress(OSError, ValueError):
                pid, started = (directory / "worker.pid").read_text().split()
                if _start_time(int(pid)) == started:
                    os.killpg(int(pid), signal.SIGKILL)
                    killed += 1
            shutil.rmtree(directory, ignore_errors=True)
        return killed


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]
