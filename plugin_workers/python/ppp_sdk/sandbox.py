"""A forked worker's private sandbox, entered before any plugin code is imported.

The zygote (``ppp_sdk.zygote``) runs inside a bubblewrap sandbox of its own that the supervisor
set up: a read-only view of the interpreter, the SDK and the plugins, no network, the
supervisors's socket root as the only writable directory, and just the capabilities this module
needs (CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_NET_ADMIN, CAP_KILL). Each worker it forks then
calls ``enter()``, which gives that worker what a spawned worker gets from ``bwrap``:

* its own PID namespace, where it is PID 1 (the zygote forks it straight into a new one:
  ``new_pid_namespace_for_children``), its own network namespace (made ahead by the zygote,
  which moves into a fresh one after each fork: ``fresh_network``) and its own mount, IPC, UTS
  and cgroup namespaces (``unshare`` here);
* a view in which its own directory is the only one left of the socket root (a tmpfs covers the
  others), a fresh ``/proc`` of its PID namespace, a private writable tmpfs ``/tmp`` and ``/dev/shm``,
  and nothing the zygote could see beyond that (paths in ``unmount``, e.g. the pids cgroups);
* a loopback interface that is up and nothing else;
* the unprivileged ``uid``/``gid``, no supplementary groups and no capability left (the bounding
  and inheritable sets emptied too),
  ``no_new_privs``, and the supervisor's seccomp filter.

Plain syscalls through ctypes (Python 3.11 has no ``os.unshare``); each step raises OSError,
and a worker that cannot enter its sandbox exits before it imports its plugin.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# What the worker unshares itself (its PID namespace it was forked into).
NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass
class Spec:
    """What the supervisor asks of one worker's sandbox (the ``sandbox`` field of a fork request)."""

    uid: int
    gid: int
    # The worker's own directory (its socket, HOME and TMPDIR), and the directory holding every
    # worker's: covered by a tmpfs in which only the worker's own is bound again.
    directory: str
    socket_root: str
    # The runtime's read-only paths (those below /tmp or the socket root must be bound again).
    read_only: list[str] = field(default_factory=list)
    unmount: list[str] = field(default_factory=list)
    # [its pids cgroup, where to show it read-only]: the plugin may read its own limit, as in a
    # container (its cgroup namespace makes that the root of what it sees).
    cgroup_view: list[str] = field(default_factory=list)
    tmp_size: str = "64m"

    @classmethod
    def from_request(cls, request: dict[str, Any]) -> Spec:
        return cls(
            uid=int(request["uid"]),
            gid=int(request["gid"]),
            directory=str(request["directory"]),
            socket_root=str(request["socket_root"]),
            read_only=[str(p) for p in request.get("read_only", [])],
            unmount=[str(p) for p in request.get("unmount", [])],
            cgroup_view=[str(p) for p in request.get("cgroup_view") or []],
            tmp_size=str(request.get("tmp_size", "64m")),
        )


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda value: None if value is None else value.encode()  # noqa: E731
    result = _libc.mount(encode(source), target.encode(), encode(fstype), flags, encode(data))
    _check(result, f"mount {fstype or source} on {target}")


def load_seccomp(program: bytes) -> None:
    """Set no_new_privs and install ``program`` (classic BPF, as libseccomp exports it)."""
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if not program:
        return
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "prctl(PR_SET_SECCOMP)")


def _loopback_up() -> None:
    """A new network namespace has ``lo``, down; runtimes (the JVM, some libraries) expect it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _private_view(spec: Spec) -> None:
    """Mounts, as root of the new mount namespace: only the worker's own directory is left writable.

    Two tmpfs hide what the zygote shares with every worker: one on the socket root (the other
    workers' directories) and a private, writable ``/tmp``. What must stay visible below them (the
    worker's own directory; runtime paths below /tmp, such as a test's plugins) comes back
    through descriptors opened before: they still name the covered directories.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    covered = (spec.socket_root, "/tmp")
    keep = {spec.directory: False}
    keep.update({path: True for path in spec.read_only if path.startswith(tuple(c + "/" for c in covered))})
    handles = {path: os.open(path, os.O_PATH | os.O_CLOEXEC) for path in keep}
    umask = os.umask(0o022)  # the directories made here must be traversable by the worker's uid
    try:
        _mount("tmpfs", spec.socket_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k")
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={spec.tmp_size}")
        for path, read_only in keep.items():
            if os.path.isdir(f"/proc/self/fd/{handles[path]}"):
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            _mount(f"/proc/self/fd/{handles[path]}", path, None, MS_BIND)
            if read_only:
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        os.umask(umask)
        for handle in handles.values():
            os.close(handle)
    covered_by_view = ()
    if spec.cgroup_view:
        # On top of the zygote's view of every worker's cgroup, which it hides from then on.
        group, where = spec.cgroup_view
        _mount(group, where, None, MS_BIND)
        _mount(None, where, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        covered_by_view = (where + "/",)
    for path in spec.unmount:
        if not path.startswith(covered_by_view):
            _check(_libc.umount2(path.encode(), MNT_DETACH), f"umount {path}")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={spec.tmp_size}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_privileges(uid: int, gid: int) -> None:
    # The bounding set first (while CAP_SETPCAP is still ours): nothing can be regained, ever.
    with open("/proc/sys/kernel/cap_last_cap") as source:
        last = int(source.read())
    for cap in range(last + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"prctl(PR_CAPBSET_DROP, {cap})")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # from root to another uid: the effective and permitted sets go
    # The inheritable set stays after a uid change: clear it too (and so the ambient set).
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def fresh_network() -> None:
    """Move this process into a new network namespace whose loopback is up (and nothing else)."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _loopback_up()


def new_pid_namespace_for_children() -> None:
    """The next process this one forks is PID 1 of a new PID namespace (this one stays where it is)."""
    _check(_libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def same_pid_namespace_for_children(own: int) -> None:
    """Undo ``new_pid_namespace_for_children``: ``own`` is a descriptor of this process's PID namespace."""
    _check(_libc.setns(own, CLONE_NEWPID), "setns(CLONE_NEWPID)")


def enter(spec: Spec, seccomp: bytes, *, cwd: str, own_network: bool = False, parent_alive: int = -1) -> None:
    """Enter the worker's sandbox (see the module's doc), as PID 1 of a new PID namespace.

    ``own_network``: this process is already alone in a fresh network namespace (see
    ``fresh_network``); otherwise it makes one. ``parent_alive``: the read end of a pipe whose
    write end only the parent holds (EOF: it is gone), closed here.
    """
    _check(_libc.unshare(NAMESPACES & ~CLONE_NEWNET if own_network else NAMESPACES), "unshare")
    _private_view(spec)
    if not own_network:
        _loopback_up()
    os.chdir(cwd)
    _drop_privileges(spec.uid, spec.gid)
    # After the uid change, which clears it: die with the zygote. (getppid() says 0 to PID 1 of
    # a namespace, so the pipe tells whether the zygote died before this took effect.)
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    if parent_alive >= 0:
        os.set_blocking(parent_alive, False)
        try:
            if os.read(parent_alive, 1) == b"":
                os._exit(1)
        except BlockingIOError:
            pass
        os.close(parent_alive)
    load_seccomp(seccomp)
