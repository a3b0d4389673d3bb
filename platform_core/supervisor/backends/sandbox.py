"""The process backend's sandbox: bubblewrap namespaces, an unprivileged user and a seccomp filter.

A worker of the process backend gets the boundaries the docker backend gets from a container,
without Docker (docs/SECURITY.md, "Isolation per backend"):

* its own **network** namespace (only ``lo``; its PPP socket is a Unix socket, which still works),
  **mount** namespace (a read-only view of the runtime, the SDK and the plugin code, its own
  directory writable as HOME and TMPDIR, a private tmpfs ``/tmp``, nothing of the platform's
  ``var/``, the database, other workers' directories or the rest of the repository), **PID**,
  IPC, UTS and cgroup namespaces;
* an **unprivileged user**: a dedicated uid/gid (``WORKER_SANDBOX_UID``/``GID``) when the
  supervisor runs as root (bwrap sets up the view as root, then ``setpriv`` drops to that uid
  with no capability left), or uid 65534 in a user namespace mapped to the supervisor's own uid
  when it does not (no other uid can be had without root);
* **no new privileges** and a **seccomp** filter (``seccomp.py``).

Spawned workers (Java, Python without the zygote) run under ``bwrap`` (Debian's bubblewrap, the
sandbox Flatpak uses); ``wrap()`` builds its command line. The Python zygote runs under ``bwrap``
too, with the few capabilities its children need to make their own namespaces
(``zygote_command()``); each child enters its private sandbox before it imports the plugin
(``ppp_sdk.sandbox``), so forking keeps its speed.

``detect()`` decides at supervisor start: ``WORKER_SANDBOX=auto`` (the default) sandboxes when the
kernel and the tools allow it and otherwise runs workers unsandboxed with a loud warning;
``required`` refuses to start workers without it; ``off`` never sandboxes. The result is reported
in ``ListWorkersResponse.isolation`` and ``GET /api/v1/health``.
"""

from __future__ import annotations

import enum
import glob
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from platform_core.supervisor.backends import seccomp

log = logging.getLogger(__name__)

# A uid and gid in the range Debian reserves (65000-65533: never given to an account), so that no
# file on the machine belongs to the workers.
DEFAULT_UID = 65500
DEFAULT_GID = 65500
# The uid a worker has inside its user namespace when the supervisor is not root (as "nobody").
UNPRIVILEGED_INNER_UID = 65534
# Size of each worker's private /tmp (its HOME and TMPDIR are its socket directory, on the host).
TMP_SIZE = 64 * 1024 * 1024
# What the runtimes need of the system, bound read-only. /etc is not bound whole: it holds the
# machine's configuration and, on a platform host, its service credentials.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
)
SYSTEM_GLOBS = ("/etc/java-*",)  # the JRE's configuration (its conf/ links there)
# Capabilities of the zygote (inside its own sandbox): its children need them to make their
# namespaces and mounts, bring up their loopback, empty their bounding set, drop to the worker uid
# and be stopped by it.
# coreutils' env: runs a command with a signal's disposition reset to its default.
ENV = "/usr/bin/env"
ZYGOTE_CAPS = ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_NET_ADMIN", "CAP_KILL")


class Mode(enum.StrEnum):
    AUTO = "auto"
    REQUIRED = "required"
    OFF = "off"


class SandboxUnavailable(Exception):
    """Workers cannot be sandboxed here (no bwrap, no namespaces, no libseccomp...)."""


@dataclass(frozen=True)
class Status:
    """What a supervisor reports about its workers' isolation."""

    mode: str
    sandboxed: bool
    detail: str


@dataclass
class Sandbox:
    """How to put one supervisor's workers in a sandbox."""

    bwrap: str
    uid: int
    gid: int
    # Root: the worker runs as ``uid`` on the host (setpriv after bwrap). Otherwise a user namespace.
    privileged: bool
    # Paths a worker must never see, even if a runtime's paths lead to them (the platform's var/).
    forbidden: tuple[Path, ...] = ()
    setpriv: str = "setpriv"
    program: bytes = field(default_factory=seccomp.worker_filter, repr=False)

    # --- the worker's directory ---------------------------------------------------------------

    def prepare_directory(self, directory: Path) -> None:
        """Hand the worker its directory: its own, with the supervisor's group allowed in.

        Owner: the worker's uid (it creates its socket there); group: the supervisor's gid, with
        the set-group-id bit so that the socket gets it too, readable by group members (a
        gateway of another uid in the supervisor's group connects through it). Other users:
        nothing.
        """
        if self.privileged:
            os.chown(directory, self.uid, os.getgid())
        os.chmod(directory, 0o2770)

    # --- command lines ------------------------------------------------------------------------

    def wrap(
        self,
        argv: Sequence[str],
        *,
        directory: Path,
        cwd: Path,
        env: dict[str, str],
        seccomp_fd: int,
        cgroup_view: tuple[Path, Path] | None = None,
    ) -> list[str]:
        """The command that runs ``argv`` sandboxed, ``directory`` its only writable place.

        ``cgroup_view``: (the worker's pids cgroup, where it sees it read-only), as in a container.
        """
        read_only = runtime_paths(argv, env, workdir=cwd)
        command = [self.bwrap, "--die-with-parent", *self._namespaces(), *self._view(read_only)]
        if cgroup_view is not None:
            command += ["--ro-bind", str(cgroup_view[0]), str(cgroup_view[1])]
        command += [*_parents(directory, read_only), "--bind", str(directory), str(directory)]
        command += ["--chdir", str(cwd if _within(cwd, read_only) else directory)]
        command += ["--seccomp", str(seccomp_fd), "--cap-drop", "ALL"]
        # bwrap is started with SIGTERM ignored (so that the supervisor's SIGTERM reaches the worker
        # instead of killing bwrap, and the worker with it); the worker gets it back at its default.
        argv = [ENV, "--default-signal=TERM", *argv]
        if not self.privileged:
            return [*command, "--", *argv]
        # bwrap keeps what setpriv needs to drop to the worker uid; setpriv's exec clears the rest.
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            command += ["--cap-add", cap]
        return [*command, "--", *self._drop(), *argv]

    def zygote_command(
        self, argv: Sequence[str], *, env: dict[str, str], cwd: Path, socket_root: Path, writable: Iterable[Path] = ()
    ) -> list[str]:
        """The zygote's own sandbox: its runtime read-only, the socket root (and ``writable``) bound.

        No PID namespace: the zygote reports the pids of the workers it forks, and the
        supervisor needs them as the host knows them. Each worker gets its own PID namespace.
        """
        if not self.privileged:
            raise SandboxUnavailable("the zygote's sandbox needs a root supervisor")
        read_only = runtime_paths(argv, env)
        # No cgroup namespace either: its children join their pids cgroups through the bind below.
        command = [self.bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-net", "--unshare-uts"]
        command += self._view(read_only)
        for path in (socket_root, *writable):
            command += [*_parents(path, read_only), "--bind", str(path), str(path)]
        command += ["--chdir", str(cwd), "--cap-drop", "ALL"]
        for cap in ZYGOTE_CAPS:
            command += ["--cap-add", cap]
        return [*command, "--", *argv]

    def fork_spec(
        self,
        *,
        directory: Path,
        socket_root: Path,
        zygote_argv: Sequence[str],
        env: dict[str, str],
        unmount: Sequence[Path] = (),
        cgroup_view: tuple[Path, Path] | None = None,
    ) -> dict[str, object]:
        """The ``sandbox`` field of a zygote fork request (``ppp_sdk.sandbox.Spec``)."""
        return {
            "cgroup_view": [str(path) for path in cgroup_view] if cgroup_view else None,
            "uid": self.uid,
            "gid": self.gid,
            "directory": str(directory),
            "socket_root": str(socket_root),
            "read_only": [str(path) for path in runtime_paths(zygote_argv, env) if self._allowed(path)],
            "unmount": [str(path) for path in unmount],
            "tmp_size": str(TMP_SIZE),
        }

    def _namespaces(self) -> list[str]:
        spaces = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        if self.privileged:
            return spaces
        # No root: a user namespace (mapped to our own uid) is what lets bwrap make the others.
        uid = str(UNPRIVILEGED_INNER_UID)
        return ["--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns", *spaces]

    def _view(self, read_only: Sequence[Path]) -> list[str]:
        # First the fresh /proc, /dev and /tmp: binds below /tmp (a test's plugins) go on top.
        args = ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_SIZE), "--tmpfs", "/tmp"]
        for name in SYSTEM_DIRS:
            path = Path(name)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), name]
            elif path.is_dir():
                args += ["--ro-bind", name, name]
        args += ["--perms", "0755", "--dir", "/etc"]  # bwrap would make it 0700: closed to the worker uid
        for name in (*SYSTEM_FILES, *(p for pattern in SYSTEM_GLOBS for p in sorted(glob.glob(pattern)))):
            args += ["--ro-bind-try", name, name]
        for path in read_only:
            if self._allowed(path):
                args += [*_parents(path, read_only), "--ro-bind", str(path), str(path)]
        return args

    def _allowed(self, path: Path) -> bool:
        for secret in self.forbidden:
            if path == secret or secret.is_relative_to(path) or path.is_relative_to(secret):
                log.warning("not showing %s to sandboxed workers: it holds or is inside %s", path, secret)
                return False
        return True

    def _drop(self) -> list[str]:
        return [
            self.setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]

    def status(self, mode: Mode) -> Status:
        who = f"uid {self.uid}" if self.privileged else f"a user namespace (uid {UNPRIVILEGED_INNER_UID} inside)"
        return Status(
            mode=str(mode),
            sandboxed=True,
            detail=f"bubblewrap: own network, mount, PID, IPC and UTS namespaces; {who}; no capabilities; seccomp",
        )


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _parents(path: Path, binds: Iterable[Path]) -> list[str]:
    """``--dir`` for each ancestor bwrap would otherwise create 0700 (unreadable for the worker uid)."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if str(parent) == "/" or any(str(parent) == s or parent.is_relative_to(s) for s in SYSTEM_DIRS):
            continue
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def runtime_paths(argv: Sequence[str], env: dict[str, str], *, workdir: Path | None = None) -> list[Path]:
    """What a worker command needs to see, read-only: its interpreter's installation, the files
    and directories its arguments name (the jar), its PYTHONPATH (the SDK and the plugins), and
    its runtime's working directory (a Node worker's SDK, modules and plugins). A path that holds
    the platform's state (the repository root, with var/) is left out by ``Sandbox._allowed``.

    An executable in a ``bin/`` directory brings its prefix (a virtualenv and the Python it was
    made from; a JRE), found both as named and through its symbolic links.
    """
    found: list[Path] = []

    def add(path: Path) -> None:
        if path.exists() and not _within(path, (*found, *(Path(d) for d in SYSTEM_DIRS))):
            found[:] = [p for p in found if not p.is_relative_to(path)]
            found.append(path)

    executable = shutil.which(argv[0]) if argv else None
    if executable:
        for path in (Path(executable).absolute(), Path(executable).resolve()):
            add(path.parent.parent if path.parent.name == "bin" else path)
    for arg in argv[1:]:
        if arg.startswith("/") and Path(arg).exists():
            add(Path(arg).resolve())
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry:
            add(Path(entry).resolve())
    if workdir is not None:
        add(Path(workdir).resolve())
    return found


def _probe(command: list[str], pass_fds: Sequence[int]) -> str | None:
    """Run a trivial sandboxed command; None if it worked, else why not."""
    try:
        result = subprocess.run(
            command, capture_output=True, timeout=10, check=False, stdin=subprocess.DEVNULL, pass_fds=pass_fds
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        return (result.stderr or result.stdout).decode(errors="replace").strip() or f"exit {result.returncode}"
    return None


def detect(
    mode: Mode | str, *, uid: int = DEFAULT_UID, gid: int = DEFAULT_GID, forbidden: Sequence[Path] = ()
) -> tuple[Sandbox | None, Status]:
    """The sandbox this supervisor can give its workers, and what to report about it.

    Tries it once (a sandboxed ``true`` with the namespaces, the uid change and the seccomp
    filter), so that a kernel without user namespaces or a missing tool shows at start, not at
    the first allocation.
    """
    mode = Mode(mode)
    if mode is Mode.OFF:
        return None, Status(
            str(mode), False, "off (WORKER_SANDBOX=off): workers share the supervisor's user, files and network"
        )
    try:
        sandbox = _try(uid, gid, forbidden)
    except SandboxUnavailable as exc:
        return None, Status(str(mode), False, f"unavailable: {exc}")
    return sandbox, sandbox.status(mode)


def _try(uid: int, gid: int, forbidden: Sequence[Path]) -> Sandbox:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap is not installed (apt-get install bubblewrap)")
    setpriv = shutil.which("setpriv") or "setpriv"
    try:
        program = seccomp.worker_filter()
    except seccomp.SeccompUnavailable as exc:
        raise SandboxUnavailable(str(exc)) from exc
    sandbox = Sandbox(
        bwrap=bwrap,
        uid=uid,
        gid=gid,
        privileged=os.geteuid() == 0,
        forbidden=tuple(Path(p).resolve() for p in forbidden),
        setpriv=setpriv,
        program=program,
    )
    true = shutil.which("true") or "/bin/true"
    read_end = seccomp_pipe(program)
    try:
        # /tmp stands in for the worker's directory: bound, and no chown needed for `true`.
        command = sandbox.wrap([true], directory=Path("/tmp"), cwd=Path("/"), env={}, seccomp_fd=read_end)
        if (error := _probe(command, (read_end,))) is not None:
            raise SandboxUnavailable(f"bwrap failed: {error}")
    finally:
        os.close(read_end)
    return sandbox


def seccomp_pipe(program: bytes) -> int:
    """A readable descriptor holding ``program`` (for ``bwrap --seccomp FD``); the caller closes it."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, program)  # ~1 KB: fits the pipe's buffer, never blocks
    finally:
        os.close(write_end)
    return read_end
