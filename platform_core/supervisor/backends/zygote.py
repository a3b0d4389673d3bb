"""The supervisor's side of a zygote: a pre-imported template process that forks Python workers.

Spawning a Python worker costs an interpreter start plus ``import grpc`` (~200 ms); asking a
process that has done both to fork costs a few milliseconds (``ppp_sdk.zygote`` is the other
side and documents the control protocol). The process backend uses this for the Python
runtime and falls back to spawning whenever the zygote is missing or misbehaves.

The supervisor is not the parent of a forked worker, so it cannot wait for it. Instead it
holds a pidfd of each worker (readable once the worker has exited) and learns the exit code
from the zygote, which reaps its children and reports them. ``ForkedProcess`` wraps this in
the part of ``asyncio.subprocess.Process`` the backend uses (pid, stdout, returncode, wait).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Requests and reports are a few hundred bytes; a packet is never split.
MAX_PACKET = 64 * 1024
# Imports take ~0.2 s; a zygote far slower than that is not worth waiting for.
READY_TIMEOUT_S = 10.0
# How long the exit code may lag behind the pidfd saying the worker is gone.
EXIT_REPORT_TIMEOUT_S = 5.0
# What a worker whose exit the zygote could not report most likely died of: its PR_SET_PDEATHSIG.
UNKNOWN_EXIT = -signal.SIGKILL


class ZygoteError(Exception):
    """The zygote could not start or could not fork a worker; the caller spawns instead."""


def supported() -> bool:
    """pidfds (Linux 5.3+) are how we learn that a worker we did not fork ourselves has exited."""
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return False
    os.close(fd)
    return True


class ForkedProcess:
    """A worker forked by the zygote, shaped like the ``asyncio.subprocess.Process`` it replaces."""

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: asyncio.StreamReader | None = None
        self._zygote = zygote
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._gone = False
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # already exited and reaped: the zygote's report is on its way
            self._gone = True
        except OSError as exc:  # out of descriptors: the zygote's report alone will have to do
            log.warning("no pidfd for worker %d: %s", pid, exc)
        else:
            self._loop.add_reader(self._pidfd, self._on_pidfd)

    def _on_pidfd(self) -> None:
        self._close_pidfd()
        self._gone = True
        if not self._zygote.alive:
            self.exited(UNKNOWN_EXIT)
        else:  # the zygote reports it once it has reaped it; do not wait forever if it does not
            self._loop.call_later(EXIT_REPORT_TIMEOUT_S, self.exited, UNKNOWN_EXIT)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)
            self._close_pidfd()

    def zygote_lost(self) -> None:
        """The zygote is gone and will not report; the pidfd says when the worker (dying with it) is gone."""
        if self._gone or self._pidfd is None:
            self.exited(UNKNOWN_EXIT)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class Zygote:
    """One running template process and its control channel."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process = process
        self.pid = process.pid
        self.control = control
        self.alive = True
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self._stderr_pump = asyncio.create_task(self._log_stderr())
        self._loop.add_reader(control.fileno(), self._on_readable)

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        root: Path,
        preload: Sequence[str] = (),
        seccomp: bytes = b"",
        parent_pid: int | None = None,
    ) -> Zygote:
        """Start the template process and wait until it has imported everything and says so.

        ``seccomp``: the filter each sandboxed worker loads (read once by the zygote from a pipe).
        ``parent_pid``: the process the zygote checks it is the child of (default: this one; 0:
        no check, when something between us, e.g. bwrap, takes care of dying with us).
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        passed = [theirs.fileno()]
        command = [
            *argv,
            "--control-fd",
            str(theirs.fileno()),
            "--parent-pid",
            str(os.getpid() if parent_pid is None else parent_pid),
            "--root",
            str(root),
            *(arg for module in preload for arg in ("--preload", module)),
        ]
        if seccomp:
            read_end, write_end = os.pipe()
            os.write(write_end, seccomp)  # ~1 KB: fits the pipe's buffer
            os.close(write_end)
            passed.append(read_end)
            command += ["--seccomp-fd", str(read_end)]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env=env,
                pass_fds=passed,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                # Not in the supervisor's process group: a terminal's Ctrl-C is the supervisor's to handle.
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"cannot start {command[0]}: {exc}") from exc
        finally:
            theirs.close()
            for fd in passed[1:]:
                os.close(fd)
        ours.setblocking(False)
        zygote = cls(process, ours)
        try:
            await asyncio.wait_for(asyncio.shield(zygote._ready), READY_TIMEOUT_S)
        except BaseException as exc:
            await zygote.close()
            if isinstance(exc, TimeoutError):
                raise ZygoteError(f"not ready after {READY_TIMEOUT_S:g} s") from None
            raise
        return zygote

    # --- the control channel ------------------------------------------------------------------

    def _on_readable(self) -> None:
        while True:
            try:
                data = self.control.recv(MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            try:
                self._dispatch(json.loads(data))
            except Exception:  # a confused zygote is a dead zygote: never trust it further
                log.exception("zygote %d sent a bad message", self.pid)
                self._lost()
                return

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            if (child := self._children.pop(int(message["exited"]), None)) is not None:
                child.exited(int(message["code"]))
        elif "ready" in message:
            if not self._ready.done():
                self._ready.set_result(int(message["ready"]))
        elif (future := self._pending.pop(int(message["id"]), None)) is not None:
            if "pid" in message:
                # Registered here, not in fork(): the exit report may be in the very next packet.
                pid = int(message["pid"])
                message["process"] = self._children[pid] = ForkedProcess(pid, self)
                if future.done():  # the allocation was cancelled meanwhile: nobody will use it
                    _kill_group(pid)
            if not future.done():
                future.set_result(message)

    def _lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if not self._closing and self._ready.done():
            log.warning("python zygote %d is gone; workers are spawned until it is restarted", self.pid)
        self._loop.remove_reader(self.control.fileno())
        self.control.close()
        error = ZygoteError(f"zygote {self.pid} is gone")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: start() reports it
        for child in self._children.values():
            child.zygote_lost()

    async def _log_stderr(self) -> None:
        """The zygote writes only when something is wrong (preload or import errors, crashes)."""
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            log.warning("python zygote %d: %s", self.pid, line.decode(errors="replace").rstrip())

    # --- forking ------------------------------------------------------------------------------

    async def fork(
        self,
        *,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        rlimits: dict[str, int],
        cgroup_procs: str = "",
        sandbox: dict[str, Any] | None = None,
    ) -> ForkedProcess:
        """A new worker running ``python -m ppp_sdk ARGS``, its stdout and stderr on a pipe of ours.

        ``cgroup_procs``: the ``cgroup.procs`` file of a cgroup the worker joins before it runs
        any plugin code. ``sandbox``: the private sandbox it enters before that
        (``ppp_sdk.sandbox.Spec``); None: none.
        """
        if not self.alive:
            raise ZygoteError(f"zygote {self.pid} is gone")
        loop = self._loop
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[request_id] = future
        request = {
            "id": request_id,
            "op": "fork",
            "args": args,
            "cwd": str(cwd),
            "env": env,
            "rlimits": rlimits,
            "cgroup_procs": cgroup_procs,
            "sandbox": sandbox,
        }
        try:
            await self._send(json.dumps(request).encode(), write_end)
        except BaseException as exc:
            self._pending.pop(request_id, None)
            os.close(read_end)
            if isinstance(exc, OSError):
                raise ZygoteError(f"cannot reach zygote {self.pid}: {exc}") from exc
            raise
        finally:
            os.close(write_end)  # the request carries its own copy; the worker must hold the only one
        try:
            reply = await future
        except BaseException:
            os.close(read_end)
            raise
        if "pid" not in reply:
            os.close(read_end)
            raise ZygoteError(f"zygote {self.pid} could not fork: {reply.get('error', reply)}")
        child: ForkedProcess = reply["process"]
        try:
            child.stdout = asyncio.StreamReader(loop=loop)
            protocol = asyncio.StreamReaderProtocol(child.stdout, loop=loop)
            await loop.connect_read_pipe(lambda: protocol, os.fdopen(read_end, "rb", buffering=0))
        except BaseException as exc:  # a worker nobody watches must not live on
            _kill_group(child.pid)
            if isinstance(exc, Exception):
                raise ZygoteError(f"cannot read the output of worker {child.pid}: {exc}") from exc
            raise
        return child

    async def _send(self, data: bytes, fd: int) -> None:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        while True:
            try:
                self.control.sendmsg([data], ancillary)
                return
            except BlockingIOError:  # the zygote is behind on reading: wait until it has room
                writable = self._loop.create_future()
                self._loop.add_writer(self.control.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    self._loop.remove_writer(self.control.fileno())

    # --- the end ------------------------------------------------------------------------------

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop the zygote: closing its channel makes it kill its workers and exit."""
        self._closing = True
        self._lost()
        try:
            await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stderr_pump, 1.0)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
