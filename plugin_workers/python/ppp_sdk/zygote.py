"""``python -m ppp_sdk.zygote --control-fd N --parent-pid P``: a template process that forks workers.

Starting a Python worker costs ~200 ms of interpreter start and ``import grpc``; forking a
process that has already done both costs a few milliseconds. This process imports grpc, the
generated PPP code and the SDK once (never a gRPC server or channel: gRPC core must not be
initialised, nor any thread running, when we fork), then waits for its supervisor's requests.

Control channel: the ``SOCK_SEQPACKET`` Unix socket on ``--control-fd``, one JSON object per
packet (packets keep their boundaries, so no length prefix is needed, and a file descriptor
passed with ``SCM_RIGHTS`` arrives with the packet it belongs to).

supervisor → zygote: ``{"id", "op": "fork", "args", "cwd", "env", "rlimits", "cgroup_procs",
"sandbox"}`` with one descriptor attached, the worker's stdout/stderr.
zygote → supervisor: ``{"ready": pid}`` once imported; ``{"id", "pid"}`` or ``{"id", "error"}``
per request; ``{"exited": pid, "code": code}`` when a worker exits (code as asyncio reports
it: the exit status, or minus the signal number).

A forked worker isolates itself as the process backend's spawned workers are isolated: its
pids cgroup (if given) first, its own session, rlimits, working directory, umask and a
replaced environment, death with its parent (this process, which itself dies with the
supervisor and takes its workers with it), stdout and stderr on the given descriptor, no other
descriptor of ours. With a ``sandbox`` in the request (the zygote then lives in a bubblewrap
sandbox of the supervisor's), it enters its own private one (``ppp_sdk.sandbox``): namespaces, a
view of only its own directory, the worker uid, no_new_privs and the seccomp filter read from
``--seccomp-fd`` at start. Then it runs ``ppp_sdk.__main__.main(args)``, exactly what
``python -m ppp_sdk ARGS`` runs.

Imports nothing of the platform: a worker is only the SDK and its plugin.
"""

from __future__ import annotations

import argparse
import array
import atexit
import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import tempfile
import threading
import traceback
from typing import Any

# What every worker imports anyway, imported once here and shared copy-on-write by every fork
# (grpc.aio.server() imports grpc.aio._server and asyncio; handlers run on a thread pool). Imported
# by main(), once this process is sure to die with its supervisor: they take ~200 ms.
PRELOAD = (
    "grpc",
    "grpc.aio",
    "grpc.aio._server",
    "asyncio",
    "concurrent.futures.thread",
    "ppp_sdk.server",
    "ppp_sdk.__main__",
    "ppp_sdk.sandbox",
)

PR_SET_PDEATHSIG = 1
MAX_PACKET = 64 * 1024  # requests are a few hundred bytes; SEQPACKET never splits one
RLIMITS = {
    "as": resource.RLIMIT_AS,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}
# Held while forking, so a worker is always in ``children`` before a signal asks us to kill them.
HANDLED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP}


def _set_pdeathsig(signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


class Zygote:
    def __init__(self, control: socket.socket, seccomp: bytes = b"") -> None:
        self.control = control
        self.seccomp = seccomp
        # True while we sit in a fresh network namespace that the next worker forked inherits.
        self.network_ready = False
        # Sandboxed: our own PID namespace (each worker is forked into a new one; see _fork), and
        # a pipe whose write end only we hold: a worker, PID 1 of its namespace (getppid() is 0),
        # sees EOF on it once we are gone.
        self.own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if seccomp else -1
        self.alive_r, self.alive_w = os.pipe2(os.O_CLOEXEC)
        self.children: set[int] = set()
        self.stopping = False
        # Signals are turned into bytes on this pipe (set_wakeup_fd), so one poll() waits for both.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # --- the template's own life --------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the supervisor
        for signum in HANDLED:
            signal.signal(signum, self._on_signal)
        signal.set_wakeup_fd(self.wake_w)
        self._prepare_network()
        self._send({"ready": os.getpid()})
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while not self.stopping:
            for fd, _ in poller.poll():
                if fd == self.wake_r:
                    self._drain_wakeups()
                elif not self._serve_one():
                    self.stopping = True  # the supervisor closed the channel (or died)
            self._reap()
        self._kill_children()
        return 0

    def _on_signal(self, signum: int, frame: object) -> None:
        if signum in (signal.SIGTERM, signal.SIGHUP):
            self.stopping = True

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _kill_children(self) -> None:
        """Kill every worker's whole process group (what it started goes too) and reap them."""
        for pid in list(self.children):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for pid in list(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()

    # --- the control channel ------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.control.send(json.dumps(message).encode())
        except OSError:
            self.stopping = True  # nobody listens any more: the supervisor is gone

    def _serve_one(self) -> bool:
        """Read and answer one request; False when the channel is closed."""
        fds = array.array("i")
        try:
            data, ancillary, _flags, _address = self.control.recvmsg(MAX_PACKET, socket.CMSG_SPACE(4 * fds.itemsize))
        except InterruptedError:
            return True
        except OSError:
            return False
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        request: dict[str, Any] = {}
        try:
            request = json.loads(data)
            if request.get("op") != "fork" or len(fds) != 1:
                raise ValueError(f"unknown request or wrong number of descriptors: {request.get('op')!r}")
            pid = self._fork(request, fds[0])
            reply: dict[str, Any] = {"id": request.get("id"), "pid": pid}
        except Exception as exc:
            reply = {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"}
        finally:
            for fd in fds:
                os.close(fd)
        self._send(reply)
        if "pid" in reply:
            self._prepare_network()  # the worker just forked took ours: make the next one's
        return True

    def _prepare_network(self) -> None:
        """Sandboxed: move into a fresh network namespace (loopback up) for the next worker to inherit.

        Making a network namespace takes milliseconds (often 5, sometimes 15 on a busy machine):
        done here, after the reply, it is off the path of the next allocation.
        """
        self.network_ready = False
        if not self.seccomp:  # not sandboxed: workers share the supervisor's network
            return
        from ppp_sdk import sandbox  # preloaded

        try:
            sandbox.fresh_network()
            self.network_ready = True
        except OSError as exc:  # each worker then makes its own
            print(f"ppp_sdk.zygote: cannot prepare a network namespace: {exc}", file=sys.stderr, flush=True)

    # --- forking a worker ---------------------------------------------------------------------

    def _fork(self, request: dict[str, Any], output: int) -> int:
        # A thread (ours, or one a native library started) would be lost in the child with
        # whatever locks it held; gRPC's threads start only in the worker, after the fork.
        threads = len(os.listdir("/proc/self/task"))
        if threads != 1 or threading.active_count() != 1:
            raise RuntimeError(f"refusing to fork with {threads} threads running")
        sys.stdout.flush()
        sys.stderr.flush()
        zygote_pid = os.getpid()
        # Out of the collector's sight: a worker's collections would otherwise write to (and so
        # copy) every page of objects it shares with us.
        gc.freeze()
        sandboxed = request.get("sandbox") is not None
        if sandboxed:
            from ppp_sdk import sandbox  # preloaded

            if self.own_pid_namespace < 0:
                raise RuntimeError("a sandboxed worker was asked of a zygote started without --seccomp-fd")

            # The worker is forked straight into a PID namespace of its own, as its PID 1.
            sandbox.new_pid_namespace_for_children()
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
            if pid == 0:
                self._become_worker(request, output, zygote_pid)  # never returns
            self.children.add(pid)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            if sandboxed:
                sandbox.same_pid_namespace_for_children(self.own_pid_namespace)
        return pid

    def _become_worker(self, request: dict[str, Any], output: int, zygote_pid: int) -> None:
        code = 127
        try:
            self._isolate(request, output, zygote_pid)
            if spec := request.get("sandbox"):
                from ppp_sdk import sandbox  # preloaded: no import cost

                sandbox.enter(
                    sandbox.Spec.from_request(spec),
                    self.seccomp,
                    cwd=request["cwd"],
                    own_network=self.network_ready,
                    parent_alive=self.alive_r,
                )
                # PID 1 of its own namespace: getppid() is 0, so the SDK must not compare it.
                os.environ.pop("PPP_PARENT_PID", None)
            code = 1
            from ppp_sdk.__main__ import main as worker_main  # preloaded: no import cost

            sys.argv = ["ppp_sdk", *request["args"]]
            worker_main(list(request["args"]))
            code = 0
        except SystemExit as exc:
            # As the interpreter reports an uncaught SystemExit ("plugin: not a ppp_sdk.Plugin").
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
        finally:
            # Not a normal interpreter exit, which would unwind into the zygote's own frames:
            # the atexit handlers (the plugin's, logging's), then out. Unlike a spawned worker,
            # it does not wait for handler threads still running after the server stopped.
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _isolate(self, request: dict[str, Any], output: int, zygote_pid: int) -> None:
        """What the spawn path gets from setsid, prlimit, cwd= and env= before exec."""
        _set_pdeathsig(signal.SIGKILL)
        os.close(self.alive_w)  # only the zygote holds it
        if os.getppid() != zygote_pid and not (os.getppid() == 0 and _writer_alive(self.alive_r)):
            os._exit(1)  # the zygote died before prctl took effect
        if cgroup_procs := request.get("cgroup_procs"):
            # First: whatever this process and its plugin start is counted against its pids limit.
            try:
                with open(cgroup_procs, "w") as procs:
                    procs.write(str(os.getpid()))
            except OSError as exc:  # the supervisor moves us too, a moment later; it says if it fails
                print(f"ppp_sdk.zygote: cannot join {cgroup_procs}: {exc}", file=sys.stderr)
        for signum in (*HANDLED, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        os.setsid()
        # stdin from /dev/null, stdout and stderr to the supervisor; nothing else of ours stays open.
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        self.control.close()
        # Nothing else of ours stays open but the pipe that tells a sandboxed worker the zygote lives.
        os.closerange(3, self.alive_r)
        os.closerange(self.alive_r + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        if not request.get("sandbox"):
            os.close(self.alive_r)
        for name, value in request["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (int(value), int(value)))
        os.chdir(request["cwd"])
        os.umask(0o077)
        env = {str(key): str(value) for key, value in request["env"].items()}
        # Our PR_SET_PDEATHSIG is about the zygote; the SDK checks it against this.
        env["PPP_PARENT_PID"] = str(zygote_pid)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # TMPDIR changed: let tempfile look again


def _writer_alive(read_end: int) -> bool:
    """Whether a process still holds the write end of the pipe (no EOF on ``read_end``)."""
    os.set_blocking(read_end, False)
    try:
        return os.read(read_end, 1) != b""
    except BlockingIOError:
        return True
    finally:
        os.set_blocking(read_end, True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ppp_sdk.zygote", description=__doc__.splitlines()[0])
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    # Unused here; in the command line so that tools (and tests) that look for processes by their
    # socket directory find this process and every worker forked from it.
    parser.add_argument("--root", default="")
    parser.add_argument("--preload", action="append", default=[], help="also import this module (repeatable)")
    parser.add_argument("--seccomp-fd", type=int, help="read the workers' seccomp filter (BPF) from this descriptor")
    options = parser.parse_args(argv)
    # Die with the supervisor, from before the long imports on. SIGTERM rather than SIGKILL:
    # once running we handle it and take our workers along (they die with us by their own
    # PR_SET_PDEATHSIG, but what they started in their process groups would not).
    _set_pdeathsig(signal.SIGTERM)
    # 0: our parent is not the supervisor but a sandbox (bwrap) that dies with it and kills us.
    if options.parent_pid and os.getppid() != options.parent_pid:  # it died before prctl took effect
        raise SystemExit(1)
    seccomp = b""
    if options.seccomp_fd is not None:
        with os.fdopen(options.seccomp_fd, "rb") as source:
            seccomp = source.read()
    for module in PRELOAD:
        importlib.import_module(module)
    for module in options.preload:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a plugin that cannot be imported fails in its worker, with its error
            print(f"zygote: cannot preload {module}: {type(exc).__name__}: {exc}", file=sys.stderr)
    control = socket.socket(fileno=options.control_fd)
    raise SystemExit(Zygote(control, seccomp).run())


if __name__ == "__main__":
    main()
