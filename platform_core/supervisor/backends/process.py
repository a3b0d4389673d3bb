"""The ``process`` backend: each worker is a local child process.

Isolation on this backend: its own session and process group (so a stop reaches every
process it started), a private socket directory (mode 0700) that is also its HOME and
TMPDIR, a scrubbed environment (no secrets of the supervisor leak into plugins), rlimits
(address space, CPU seconds, open files, file size, no core dumps) applied by ``prlimit``
before the worker's program runs, and death with its parent (PR_SET_PDEATHSIG, set by the
worker SDK when PPP_PARENT_PID is given). Run by root, a pids cgroup per worker bounds its
processes and threads and catches what escaped its process group (``backends/cgroups.py``).
On top of that, where the machine allows it (``WORKER_SANDBOX``), each worker runs in a sandbox:
its own network, mount, PID, IPC and UTS namespaces with a read-only view of what it needs, an
unprivileged uid, no capabilities, no new privileges and a seccomp filter (``backends/sandbox.py``).

Python workers are forked from a zygote (``backends/zygote.py``), a template process that has
already imported grpc and the SDK; the forked worker isolates itself the same way (setsid,
setrlimit, chdir, umask, a replaced environment, PR_SET_PDEATHSIG). Without a zygote (disabled,
failed to start, died) workers are spawned as above. A sandboxed zygote lives in a bubblewrap
sandbox of its own, and each worker it forks enters a private one before it imports its plugin.

Pid files (what a restarted supervisor kills) live outside the workers' directories, where a
worker cannot rewrite them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from platform_core.runtimes import BUILTIN_RUNTIMES, ROOT, RuntimeSpec, render, stem_command, worker_values
from platform_core.supervisor import exits
from platform_core.supervisor.backends import Emit, WorkerStartError, stem_bind
from platform_core.supervisor.backends import sandbox as sandboxes
from platform_core.supervisor.backends import zygote as zygotes
from platform_core.supervisor.backends.cgroups import PidsCgroups
from platform_core.supervisor.model import ExitCause, PluginRef, State, Worker

log = logging.getLogger(__name__)

SOCKET_NAME = "worker.sock"
# A zygote that died (or never started) is started again at most this often; meanwhile, spawn.
ZYGOTE_RESTART_INTERVAL_S = 10.0
# The niceness a stem cell starts with (binding makes it 0 again).
STEM_NICE = 19
# How long an allocation waits for a zygote that is still starting (~0.2 s) before it spawns instead.
ZYGOTE_WAIT_S = 2.0


@dataclass
class Launcher:
    """How to run a worker program of one runtime on this host (a ``RuntimeSpec`` made local)."""

    # argv template (platform_core/runtimes.py PLACEHOLDERS), formatted per worker.
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    # Address-space rlimits break runtimes that reserve large virtual ranges (the JVM, V8).
    limit_address_space: bool = True
    # Python: the command of a template process that forks workers (``python -m ppp_sdk.zygote``),
    # and the arguments a forked worker gets (those of ``python -m ppp_sdk``). None: always spawn.
    zygote_argv: list[str] | None = None
    zygote_args: list[str] = field(default_factory=list)
    # The command of a stem cell (no plugin yet, {control} for its binding); None: no stem cells.
    stem_argv: list[str] | None = None

    @classmethod
    def from_spec(cls, spec: RuntimeSpec) -> Launcher:
        """The launcher of a runtime's recipe, with {root} and {python} resolved for this host."""
        return cls(
            argv=list(spec.command),
            cwd=Path(spec.resolved_workdir() or ROOT),
            env=spec.resolved_env(),
            limit_address_space=spec.limit_address_space,
            zygote_argv=render(spec.zygote_command, spec.host_values()) if spec.zygote_command else None,
            zygote_args=list(spec.zygote_args),
            stem_argv=stem_command(spec.name, spec.command),
        )

    def command(self, plugin: PluginRef, socket: Path) -> list[str]:
        return self._format(self.argv, plugin, socket)

    def fork_args(self, plugin: PluginRef, socket: Path) -> list[str]:
        return self._format(self.zygote_args, plugin, socket)

    def stem(self, plugin: PluginRef, socket: Path, control: Path) -> list[str]:
        assert self.stem_argv is not None
        return self._format(self.stem_argv, plugin, socket, control=str(control))

    @staticmethod
    def _format(template: list[str], plugin: PluginRef, socket: Path, control: str = "") -> list[str]:
        values = worker_values(
            socket=str(socket),
            entrypoint=plugin.entrypoint,
            concurrency=plugin.pool.max_concurrency if plugin.pool else 1,
            memory_bytes=plugin.limits.memory_bytes,
        )
        return render(template, {**values, "root": str(ROOT), "python": sys.executable, "control": control})


def default_launchers() -> dict[str, Launcher]:
    """The built-in runtimes' launchers: for requests that carry no recipe, and to start zygotes early."""
    return {name: Launcher.from_spec(spec) for name, spec in BUILTIN_RUNTIMES.items()}


class ProcessBackend:
    name = "process"

    def __init__(
        self,
        *,
        supervisor_id: str,
        socket_root: Path,
        launchers: dict[str, Launcher] | None = None,
        output_limit: int = 64 * 1024,
        zygote: bool = True,
        zygote_preload: Sequence[str] = (),
        sandbox: sandboxes.Mode | str = sandboxes.Mode.AUTO,
        sandbox_uid: int = sandboxes.DEFAULT_UID,
        sandbox_gid: int = sandboxes.DEFAULT_GID,
        hidden: Sequence[Path] = (),
    ) -> None:
        """``hidden``: paths no sandboxed worker may see even if a runtime's paths include them
        (the platform's var/ directory: its database and secrets)."""
        self.supervisor_id = supervisor_id
        self.socket_root = Path(socket_root) / supervisor_id
        # By runtime name: for requests without a recipe (and the zygote started with the supervisor).
        self.launchers = launchers if launchers is not None else default_launchers()
        # The launchers of recipes that came with requests (few: one per runtime edit).
        self._spec_launchers: dict[RuntimeSpec, Launcher] = {}
        self.output_limit = output_limit
        self._prlimit = shutil.which("prlimit")
        # None without root or a pids hierarchy: forks of workers are then not bounded.
        self._cgroups = PidsCgroups.detect(supervisor_id, scope=str(self.socket_root))
        self.sandbox_mode = sandboxes.Mode(sandbox)
        self.sandbox, self.isolation = sandboxes.detect(
            self.sandbox_mode, uid=sandbox_uid, gid=sandbox_gid, forbidden=hidden
        )
        if self.sandbox is None and self.sandbox_mode is not sandboxes.Mode.OFF:
            refusal = " no worker will be started" if self.sandbox_mode is sandboxes.Mode.REQUIRED else ""
            log.error(
                "WORKER SANDBOX %s: process workers of %s run UNSANDBOXED, with the supervisor's user, files "
                "and network.%s",
                self.isolation.detail,
                supervisor_id,
                refusal,
            )
        self.use_zygote = zygote and zygotes.supported()
        if self.use_zygote and self.sandbox is not None and not self.sandbox.privileged:
            # The zygote's children need root to make their own sandboxes: spawn each in bwrap instead.
            log.info("sandboxed workers are spawned, not forked: the zygote's sandbox needs a root supervisor")
            self.use_zygote = False
        # Modules the zygote imports besides the SDK (plugin modules, to save their import too).
        self.zygote_preload = list(zygote_preload)
        self._zygotes: dict[str, asyncio.Task[zygotes.Zygote | None]] = {}
        self._zygote_started: dict[str, float] = {}

    async def start(self, worker: Worker, emit: Emit) -> Path:
        launcher = self.launcher_for(worker.plugin)
        if launcher is None:
            raise WorkerStartError(f"this supervisor cannot run {worker.plugin.runtime!r} workers")
        if not worker.plugin.entrypoint:
            raise WorkerStartError(f"plugin {worker.plugin.name!r} has no entrypoint")
        socket, env = self._prepare(worker, launcher)
        zygote = await self._zygote_for(worker.plugin.runtime, launcher)
        if zygote is not None:
            process = await self._fork(zygote, worker, launcher, socket, env, emit)
            if process is not None:
                return self._started(worker, process, socket, emit, f"forked from zygote {zygote.pid}")
        return await self._spawn(worker, launcher, socket, env, emit)

    def can_start_stem_cells(self, spec: RuntimeSpec) -> bool:
        return stem_command(spec.name, spec.command) is not None

    async def start_stem(self, worker: Worker, emit: Emit) -> Path:
        """Start a stem cell of ``worker.plugin.runtime_spec``'s runtime (no plugin); the path of
        its control socket, which exists once it is ready to be bound."""
        launcher = self.launcher_for(worker.plugin)
        if launcher is None or launcher.stem_argv is None:
            raise WorkerStartError(f"{worker.plugin.runtime!r} workers cannot start as stem cells")
        socket, env = self._prepare(worker, launcher)
        control = socket.parent / stem_bind.CONTROL_NAME
        worker.runtime_state["control"] = control
        command = launcher.stem(worker.plugin, socket, control)
        await self._spawn(worker, launcher, socket, env, emit, command=command)
        return control

    async def bind(self, worker: Worker, plugin: PluginRef) -> None:
        """Bind a stem cell to ``plugin``: its limits on the running processes (pids cgroup,
        niceness, CPU seconds from now; its address space set by the worker), then the plugin,
        loaded by the worker."""
        limits = plugin.limits
        _renice(self._processes(worker), 0)
        if (group := worker.runtime_state.get("cgroup")) is not None:
            (group / "pids.max").write_text(str(limits.pids) if limits.pids > 0 else "max")
        if limits.cpu_seconds:
            for pid in self._processes(worker):
                try:
                    cap = math.ceil(_cpu_seconds(pid)) + limits.cpu_seconds
                    await _lower_rlimits(pid, {"cpu": (cap, cap)})
                except ProcessLookupError:
                    continue
                except OSError as exc:
                    raise WorkerStartError(
                        f"cannot apply {plugin.name}'s CPU limit to stem cell pid {pid}: {exc}"
                    ) from exc
        # Its address space is set by the worker itself (it may lower its own limit; the supervisor
        # may not touch another uid's without CAP_SYS_RESOURCE).
        launcher = self.launcher_for(plugin)
        address_space = limits.memory_bytes if launcher is not None and launcher.limit_address_space else 0
        await stem_bind.bind(worker.runtime_state["control"], plugin, address_space=address_space)

    def _processes(self, worker: Worker) -> list[int]:
        """Every process of the worker: its pids cgroup's, else the worker and its descendants."""
        if (group := worker.runtime_state.get("cgroup")) is not None:
            members = PidsCgroups.members(group)
            if members:
                return members
        return [worker.pid, *_descendants(worker.pid)] if worker.pid else []

    def _prepare(self, worker: Worker, launcher: Launcher) -> tuple[Path, dict[str, str]]:
        """The worker's private directory and socket path, and its environment."""
        if self.sandbox is None and self.sandbox_mode is sandboxes.Mode.REQUIRED:
            raise WorkerStartError(f"WORKER_SANDBOX=required and the sandbox is {self.isolation.detail}")
        self.socket_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        directory = Path(tempfile.mkdtemp(prefix=f"{worker.worker_id}-", dir=self.socket_root))
        worker.runtime_state["directory"] = directory
        if self.sandbox is not None:
            self.sandbox.prepare_directory(directory)
        socket = directory / SOCKET_NAME
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(directory),
            "TMPDIR": str(directory),
            "LANG": "C.UTF-8",
            "PPP_PARENT_PID": str(os.getpid()),
            "PPP_WORKER_ID": worker.worker_id,
            **launcher.env,
        }
        return socket, env

    async def _spawn(
        self,
        worker: Worker,
        launcher: Launcher,
        socket: Path,
        env: dict[str, str],
        emit: Emit,
        *,
        command: list[str] | None = None,
    ) -> Path:
        directory = socket.parent
        command = command or launcher.command(worker.plugin, socket)
        pass_fds: tuple[int, ...]
        cwd, pass_fds = launcher.cwd, ()
        if self.sandbox is not None:
            # Its PID namespace hides the supervisor; bwrap's --die-with-parent does that job.
            del env["PPP_PARENT_PID"]
            pass_fds = (sandboxes.seccomp_pipe(self.sandbox.program),)
            command = self.sandbox.wrap(
                command,
                directory=directory,
                cwd=launcher.cwd,
                env=env,
                seccomp_fd=pass_fds[0],
                cgroup_view=self._cgroup_view(worker),
            )
            cwd = directory
            worker.runtime_state["sandboxed"] = True
        argv = self._in_cgroup(worker, self._limits(worker, launcher) + command, sandboxed=self.sandbox is not None)
        if worker.stem_cell and (nice := shutil.which("nice")):
            # A stem cell starts at the lowest priority: its start (a JVM's ~0.6 s of CPU) must not
            # slow the invocations running meanwhile, among them the one that took its forerunner.
            argv = [nice, "-n", str(STEM_NICE), *argv]
        emit(worker, State.SPAWNING, f"spawn process{self._sandboxed()}: {' '.join(argv[-5:])}")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise WorkerStartError(f"cannot start {argv[0]}: {exc}") from exc
        finally:
            for fd in pass_fds:
                os.close(fd)
        return self._started(worker, process, socket, emit, "process started")

    def launcher_for(self, plugin: PluginRef) -> Launcher | None:
        """The launcher of the recipe in the request, else this supervisor's own for the runtime."""
        spec = plugin.runtime_spec
        if spec is None:
            return self.launchers.get(plugin.runtime)
        launcher = self._spec_launchers.get(spec)
        if launcher is None:
            if problems := spec.errors():
                raise WorkerStartError(f"runtime {spec.name!r} cannot start workers: {'; '.join(problems)}")
            if len(self._spec_launchers) > 64:  # edits of a runtime must not grow it without bound
                self._spec_launchers.clear()
            launcher = self._spec_launchers[spec] = Launcher.from_spec(spec)
        return launcher

    def _sandboxed(self) -> str:
        return " (sandboxed)" if self.sandbox is not None else " (UNSANDBOXED)" if self.sandbox_mode != "off" else ""

    def _in_cgroup(self, worker: Worker, argv: list[str], *, sandboxed: bool = False) -> list[str]:
        """``argv`` preceded by a shell that joins the worker's pids cgroup and execs it.

        The worker's first process joins before it runs anything, so what it forks at once (bwrap
        forks its sandbox within a millisecond) is in the cgroup too; the supervisor's move after
        the start (_confine) only covers the first process.

        ``sandboxed``: bwrap would die of the SIGTERM the supervisor sends the worker's process
        group, and take the worker with it at once (--die-with-parent); started with SIGTERM
        ignored, bwrap lets it reach the worker inside, which stops as it chooses (a worker that
        ignores it too is killed after the grace period, as any other).
        """
        group = self._cgroup(worker)
        script = []
        if group is not None:
            script.append('echo $$ > "$0" 2>/dev/null')
        if sandboxed:
            script.append("trap '' TERM")
        if not script:
            return argv
        shell_name = str(group / "cgroup.procs") if group is not None else "sh"  # $0
        return ["/bin/sh", "-c", "; ".join([*script, 'exec "$@"']), shell_name, *argv]

    def _started(
        self,
        worker: Worker,
        process: asyncio.subprocess.Process | zygotes.ForkedProcess,
        socket: Path,
        emit: Emit,
        how: str,
    ) -> Path:
        worker.pid = process.pid
        self._confine(worker)
        # Remembered so that a restarted supervisor can find workers a crash left behind; not in
        # the worker's own directory, where the worker could rewrite it.
        pid_file = self._pid_file(socket.parent)
        pid_file.parent.mkdir(mode=0o700, exist_ok=True)
        pid_file.write_text(f"{process.pid} {_start_time(process.pid)}\n")
        worker.address = f"unix://{socket}"
        worker.runtime_state["process"] = process
        worker.runtime_state["pump"] = asyncio.create_task(self._pump(process, worker))
        emit(worker, State.STARTING, f"{how}, pid {process.pid}")
        return socket

    def _rlimits(self, worker: Worker, launcher: Launcher) -> dict[str, int]:
        """rlimit name (as prlimit spells it) → value, for soft and hard limit alike."""
        limits = worker.plugin.limits
        values = {"core": 0, "nofile": 1024, "fsize": 256 * 1024 * 1024}
        if launcher.limit_address_space and limits.memory_bytes:
            values["as"] = limits.memory_bytes
        if limits.cpu_seconds:
            values["cpu"] = limits.cpu_seconds
        return values

    def _limits(self, worker: Worker, launcher: Launcher) -> list[str]:
        if not self._prlimit:
            return []
        return [self._prlimit, *(f"--{name}={value}" for name, value in self._rlimits(worker, launcher).items()), "--"]

    # --- the zygote (Python) ------------------------------------------------------------------

    async def _fork(
        self,
        zygote: zygotes.Zygote,
        worker: Worker,
        launcher: Launcher,
        socket: Path,
        env: dict[str, str],
        emit: Emit,
    ) -> zygotes.ForkedProcess | None:
        """Fork the worker from the zygote; None (and a warning) when that fails: spawn instead."""
        args = launcher.fork_args(worker.plugin, socket)
        emit(worker, State.SPAWNING, f"fork from zygote{self._sandboxed()}: {' '.join(args)}")
        # A forked worker imports its plugin within a millisecond, before _confine() could move
        # it: it joins its pids cgroup itself, before it runs any plugin code.
        group = self._cgroup(worker)
        spec = None
        if self.sandbox is not None:
            spec = self.sandbox.fork_spec(
                directory=socket.parent,
                socket_root=self.socket_root,
                zygote_argv=launcher.zygote_argv or [],
                env=launcher.env,
                unmount=self._zygote_writable(),
                cgroup_view=self._cgroup_view(worker),
            )
        try:
            return await zygote.fork(
                args=args,
                cwd=launcher.cwd,
                env=env,
                rlimits=self._rlimits(worker, launcher),
                cgroup_procs=str(group / "cgroup.procs") if group else "",
                sandbox=spec,
            )
        except Exception as exc:  # an optimisation never fails an allocation
            log.warning("%s: %s; spawning the worker instead", worker.worker_id, exc)
            return None

    async def _zygote_for(self, runtime: str, launcher: Launcher) -> zygotes.Zygote | None:
        """The runtime's running zygote, (re)starting it if need be; None: spawn this worker."""
        if not self.use_zygote or launcher.zygote_argv is None:
            return None
        task = self._zygotes.get(runtime)
        if task is not None and task.done():
            zygote = task.result()
            if zygote is not None and zygote.alive:
                return zygote
            if time.monotonic() - self._zygote_started[runtime] < ZYGOTE_RESTART_INTERVAL_S:
                return None
            task = None
        if task is None:
            task = self._start_zygote(runtime, launcher)
        try:
            return await asyncio.wait_for(asyncio.shield(task), ZYGOTE_WAIT_S)
        except TimeoutError:
            log.warning("the %s zygote is slow to start; spawning meanwhile", runtime)
            return None

    def _start_zygote(self, runtime: str, launcher: Launcher) -> asyncio.Task[zygotes.Zygote | None]:
        assert launcher.zygote_argv is not None
        self._zygote_started[runtime] = time.monotonic()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **launcher.env}
        # gRPC must not install fork handlers in the template; it never initialises gRPC core.
        env["GRPC_ENABLE_FORK_SUPPORT"] = "0"
        pid_file = self._zygote_pid_file(runtime)

        argv, seccomp = launcher.zygote_argv, b""
        if self.sandbox is not None:
            self.socket_root.mkdir(parents=True, exist_ok=True, mode=0o711)
            argv = self.sandbox.zygote_command(
                argv, env=env, cwd=launcher.cwd, socket_root=self.socket_root, writable=self._zygote_writable()
            )
            seccomp = self.sandbox.program

        async def start() -> zygotes.Zygote | None:
            try:
                zygote = await zygotes.Zygote.start(
                    argv,
                    cwd=launcher.cwd,
                    env=env,
                    root=self.socket_root,
                    preload=self.zygote_preload,
                    seccomp=seccomp,
                    # In its sandbox, the zygote's parent is bwrap (--die-with-parent does the job).
                    parent_pid=0 if self.sandbox is not None else os.getpid(),
                )
            except Exception as exc:  # an optimisation never fails an allocation
                log.warning("cannot start the %s zygote (%s); spawning workers instead", runtime, exc)
                return None
            # Remembered like a worker's pid: a restarted supervisor kills a zygote its crash left.
            with contextlib.suppress(OSError):
                self.socket_root.parent.mkdir(parents=True, exist_ok=True)
                pid_file.write_text(f"{zygote.pid} {_start_time(zygote.pid)}\n")
            return zygote

        task = self._zygotes[runtime] = asyncio.create_task(start())
        return task

    def _zygote_writable(self) -> list[Path]:
        """What a sandboxed zygote must write besides the socket root: the pids cgroups (its
        children join theirs, then unmount them from their view)."""
        if self._cgroups is None:
            return []
        # The parent of every supervisor's cgroups: it outlives ours, which a sweep may remove.
        return [self._cgroups.base.parent]

    def _cgroup_view(self, worker: Worker) -> tuple[Path, Path] | None:
        """(the worker's pids cgroup, where a sandboxed worker sees it), if it has one."""
        group = self._cgroup(worker)
        return None if group is None or self._cgroups is None else (group, self._cgroups.hierarchy)

    def _pid_file(self, directory: Path) -> Path:
        return self.socket_root.parent / f"{self.supervisor_id}.pids" / f"{directory.name}.pid"

    def _zygote_pid_file(self, runtime: str) -> Path:
        # Beside the workers' directories, not among them: reap_orphans counts those as workers.
        return self.socket_root.parent / f"{self.supervisor_id}.{runtime}-zygote.pid"

    def prepare(self, runtime: str) -> None:
        """Start the runtime's zygote now (in the background), so the first allocation finds it."""
        launcher = self.launchers.get(runtime)
        if self.use_zygote and launcher is not None and launcher.zygote_argv and runtime not in self._zygotes:
            self._start_zygote(runtime, launcher)

    async def close(self) -> None:
        """Stop the zygotes (they kill any worker of theirs still running)."""
        for runtime, task in list(self._zygotes.items()):
            del self._zygotes[runtime]
            zygote = await task
            if zygote is not None:
                await zygote.close()
            with contextlib.suppress(FileNotFoundError):
                self._zygote_pid_file(runtime).unlink()
        if self._cgroups is not None:
            await self._cgroups.close()

    # --- a worker's life ----------------------------------------------------------------------

    async def _pump(self, process: asyncio.subprocess.Process | zygotes.ForkedProcess, worker: Worker) -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            worker.output.feed(chunk)

    def exit_code(self, worker: Worker) -> int | None:
        process = worker.runtime_state.get("process")
        return None if process is None or process.returncode is None else _exit_code(worker, process.returncode)

    async def wait(self, worker: Worker) -> int:
        process: asyncio.subprocess.Process | None = worker.runtime_state.get("process")
        if process is None:  # never started
            return -1
        code = await process.wait()
        # Let the output pump drain what the worker wrote last.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(worker.runtime_state["pump"]), 1.0)
        return _exit_code(worker, code)

    def _signal(self, worker: Worker, signum: int) -> None:
        if not worker.pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.pid, signum)

    async def stop(self, worker: Worker, *, grace_s: float) -> int:
        if self.exit_code(worker) is None:
            self._sent(worker, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.wait(worker)), grace_s)
            except TimeoutError:
                self._sent(worker, signal.SIGKILL)
        return await self._remove(worker)

    async def kill(self, worker: Worker) -> int:
        self._sent(worker, signal.SIGKILL)
        return await self._remove(worker)

    def _sent(self, worker: Worker, signum: int) -> None:
        """Signal the worker's group, remembering it: an exit by a signal we did not send is news."""
        worker.runtime_state.setdefault("signals_sent", set()).add(signum)
        self._signal(worker, signum)

    async def exit_cause(self, worker: Worker, code: int) -> ExitCause | None:
        """Why the worker ended on its own (a limit, a crash, a kill from outside), if it did."""
        sent: set[int] = worker.runtime_state.get("signals_sent", set())
        if code < 0 and (worker.exited_unasked or -code not in sent):
            return exits.from_signal(-code, worker.plugin.limits)
        if code > 0 and (worker.exited_unasked or not sent):
            return exits.from_status(code)
        return None

    def _confine(self, worker: Worker) -> None:
        """Put the new worker into a pids cgroup of its own (threads count: docker's --pids-limit).

        Done by the supervisor right after the start: a spawned worker runs no plugin code before
        it has imported its plugin, long after this. A forked worker has joined the cgroup itself
        before that (see _fork); moving it again changes nothing.
        """
        if self._cgroups is None:
            return
        try:
            group = self._cgroup(worker, quiet=False)
            if group is not None:
                self._cgroups.adopt(group, worker.pid)
        except OSError as exc:
            log.warning("%s runs without a pids limit: %s", worker.worker_id, exc)

    def _cgroup(self, worker: Worker, *, quiet: bool = True) -> Path | None:
        """The worker's pids cgroup, created on first call; None without cgroups (or, if quiet, on failure)."""
        if self._cgroups is None:
            return None
        if (group := worker.runtime_state.get("cgroup")) is None:
            try:
                group = self._cgroups.create(worker.worker_id, worker.plugin.limits.pids)
            except OSError:
                if quiet:
                    return None
                raise
            worker.runtime_state["cgroup"] = group
        return group

    async def _remove(self, worker: Worker) -> int:
        code = await self.wait(worker)
        # Whatever the worker left running in its group goes too.
        self._signal(worker, signal.SIGKILL)
        if self._cgroups is not None and (group := worker.runtime_state.get("cgroup")):
            await self._cgroups.remove(group)  # and what left the group with setsid()
        if directory := worker.runtime_state.get("directory"):
            shutil.rmtree(directory, ignore_errors=True)
            self._pid_file(directory).unlink(missing_ok=True)
        return code

    async def reap_orphans(self) -> int:
        """Kill the workers an earlier life of this supervisor left behind; remove their directories.

        Workers normally die with their supervisor (PR_SET_PDEATHSIG); this catches the rest.
        A pid is only killed if its start time still matches: pids are reused. A zygote left
        behind is killed too (not counted: it is no worker).
        """
        for pid_file in self.socket_root.parent.glob(f"{self.supervisor_id}.*-zygote.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid, started = pid_file.read_text().split()
                if _start_time(int(pid)) == started:
                    os.killpg(int(pid), signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        if self._cgroups is not None:
            await self._cgroups.reap()
        if not self.socket_root.is_dir():
            return 0
        killed = 0
        for directory in self.socket_root.iterdir():
            pid_file = self._pid_file(directory)
            with contextlib.suppress(OSError, ValueError):
                pid, started = pid_file.read_text().split()
                if _start_time(int(pid)) == started:
                    os.killpg(int(pid), signal.SIGKILL)
                    killed += 1
            pid_file.unlink(missing_ok=True)
            shutil.rmtree(directory, ignore_errors=True)
        return killed


def _exit_code(worker: Worker, code: int) -> int:
    """The worker's exit code as asyncio reports a process's: bwrap reports a command killed by
    signal N as exit 128+N (like a shell); for a sandboxed spawn that is the worker's -N."""
    if worker.runtime_state.get("sandboxed") and 128 < code < 128 + signal.NSIG:
        return 128 - code
    return code


_RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS}


async def _lower_rlimits(pid: int, values: dict[str, tuple[int, int]]) -> None:
    """Lower rlimits (name → (soft, hard)) of a running process.

    Straight away when the supervisor may (same uid, or CAP_SYS_RESOURCE); a sandboxed worker
    runs as another uid, and a supervisor without CAP_SYS_RESOURCE (in a container) may not
    touch its limits: then ``prlimit`` does it as that uid, which may lower its own limits."""
    try:
        for name, (soft, hard) in values.items():
            resource.prlimit(pid, _RLIMITS[name], (soft, hard))
        return
    except PermissionError:
        pass
    status = dict(line.split(":", 1) for line in _read(f"/proc/{pid}/status").splitlines() if ":" in line)
    uid, gid = int(status["Uid"].split()[0]), int(status["Gid"].split()[0])
    process = await asyncio.create_subprocess_exec(
        # setpriv drops to the worker's ids in the helper itself (no setuid between fork and exec
        # in this multithreaded process).
        shutil.which("setpriv") or "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        shutil.which("prlimit") or "prlimit",
        f"--pid={pid}",
        *(f"--{name}={soft}:{hard}" for name, (soft, hard) in values.items()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, error = await process.communicate()
    if process.returncode != 0:
        raise PermissionError(error.decode(errors="replace").strip() or f"prlimit exited with {process.returncode}")


def _renice(pids: list[int], niceness: int) -> None:
    """Give every thread of these processes ``niceness`` (niceness is per thread on Linux)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)
                except ProcessLookupError:
                    continue
                except PermissionError:  # no CAP_SYS_NICE: the worker runs on at the stem cell's
                    log.warning("cannot renice stem cell pid %d to %d: not permitted", pid, niceness)
                    return


def _read(path: str) -> str:
    return Path(path).read_text()


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process ``pid`` has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, their children ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or ""."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]
