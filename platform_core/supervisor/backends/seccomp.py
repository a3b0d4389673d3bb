"""The seccomp filter of sandboxed workers, compiled by libseccomp into a classic BPF program.

Why libseccomp (through a few ctypes calls, below) rather than BPF written by hand: it resolves
syscall names for the machine's architecture, adds the architecture check and the x32 ABI trap
that a hand-written filter would have to get right for each architecture, and it is what
Docker, systemd and Flatpak build their filters with. Debian ships it as ``libseccomp2``, which
apt itself depends on, so every supervisor host has it. Only the supervisor compiles; workers
receive the finished program (``bwrap --seccomp FD`` loads it for spawned workers, the zygote's
children load it with one ``prctl``), so nothing on the worker side needs libseccomp.

The filter is a deny list, as Docker's default profile is in spirit: every syscall a runtime
(CPython, the JVM, their native libraries) may make is allowed; those a plugin never needs and
that widen the kernel's attack surface or escape the sandbox are refused with EPERM (ENOSYS for
``clone3``, whose flags a filter cannot read: the C library then falls back to ``clone``, whose
namespace flags are refused). The sandbox already takes every capability away, so most of these
would fail anyway; the filter closes the paths that need no capability (user namespaces,
``ptrace`` of one's own processes, ``keyctl``, ``bpf``, ``userfaultfd``, ``perf_event_open``,
``io_uring``) and is a second wall for the rest.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

# Refused with EPERM. Grouped by why.
DENIED = (
    # debugging and reading other processes' memory
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # the file-system view: mounts, roots, handles that bypass it
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_by_handle_at",
    "name_to_handle_at",
    # namespaces: leaving or making them
    "unshare",
    "setns",
    # the kernel keyring, BPF, perf, userfaultfd, io_uring: large attack surfaces no plugin needs
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "fanotify_init",
    # the machine itself
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "vhangup",
    "lookup_dcookie",
    "nfsservctl",
)
# clone(2) with any of these flags would make a namespace: CLONE_NEWTIME, NEWNS, NEWCGROUP, NEWUTS,
# NEWIPC, NEWUSER, NEWPID, NEWNET.
CLONE_NAMESPACE_FLAGS = (0x80, 0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)
TIOCSTI = 0x5412  # pushes characters into a terminal's input: the classic sandbox escape

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000
SCMP_CMP_MASKED_EQ = 7


class SeccompUnavailable(Exception):
    """libseccomp cannot be loaded or refused the filter."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.cache
def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp is not installed ({exc}); apt-get install libseccomp2") from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *conditions: tuple[int, int, int, int]) -> None:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:  # not a syscall on this architecture (e.g. iopl on arm64): nothing to refuse
        return
    array = (_ArgCmp * max(len(conditions), 1))(*(_ArgCmp(*c) for c in conditions))
    result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    if result < 0:
        raise SeccompUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-result)}")


@functools.cache
def worker_filter() -> bytes:
    """The compiled filter (an array of ``struct sock_filter``), the same for every worker."""
    lib = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        eperm = SCMP_ACT_ERRNO | errno.EPERM
        for name in DENIED:
            _rule(lib, ctx, eperm, name)
        for flag in CLONE_NAMESPACE_FLAGS:  # one rule per flag: libseccomp has no "masked, not equal"
            _rule(lib, ctx, eperm, "clone", (0, SCMP_CMP_MASKED_EQ, flag, flag))
        _rule(lib, ctx, SCMP_ACT_ERRNO | errno.ENOSYS, "clone3")
        _rule(lib, ctx, eperm, "ioctl", (1, SCMP_CMP_MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
        memory = os.memfd_create("seccomp", os.MFD_CLOEXEC)
        try:
            result = lib.seccomp_export_bpf(ctx, memory)
            if result < 0:
                raise SeccompUnavailable(f"seccomp_export_bpf failed: {os.strerror(-result)}")
            program = os.pread(memory, os.fstat(memory).st_size, 0)
        finally:
            os.close(memory)
    finally:
        lib.seccomp_release(ctx)
    if not program or len(program) % 8:
        raise SeccompUnavailable(f"libseccomp exported a malformed program ({len(program)} bytes)")
    return program
