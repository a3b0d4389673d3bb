"""prober: reports what a worker can reach: files, directories, the network, processes, privileges.

It harms nothing: it reads what it is asked to read (and reports sizes, never contents), writes
an empty marker file where it is asked to (and removes it), connects without sending, and
resolves a name only where loopback is its only network interface (as net_opener does). The
isolation tests (tests/reliability/test_isolation_process.py) ask it about the platform's
secrets, the database, other workers' directories, the gateway's and supervisors' ports, and
assert that each attempt failed; docs/SECURITY.md lists the same boundary.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from pathlib import Path

from ppp_sdk import InvocationContext

from plugins.hostile import hostile_plugin

plugin = hostile_plugin(
    "prober",
    "Report which of the given files, directories, addresses and names this worker can reach.",
    {
        "type": "object",
        "properties": {
            "read": {"type": "array", "items": {"type": "string"}},
            "list": {"type": "array", "items": {"type": "string"}},
            "write": {"type": "array", "items": {"type": "string"}},
            "connect": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}},
            "resolve": {"type": "array", "items": {"type": "string"}},
        },
    },
)


def _error(exc: OSError) -> str:
    return f"failed: {errno.errorcode.get(exc.errno or 0, exc.errno)} {exc.strerror}"


def _read(path: str) -> str:
    try:
        return f"read {len(Path(path).read_bytes())} bytes"
    except OSError as exc:
        return _error(exc)


def _list(path: str) -> list[str] | str:
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return _error(exc)


def _write(path: str) -> str:
    path = os.path.expanduser(path)  # "~/x": in its HOME
    try:
        with open(path, "x"):
            pass
    except OSError as exc:
        return _error(exc)
    os.unlink(path)
    return "written"


def _connect(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=2):
            return "connected"
    except OSError as exc:
        return _error(exc)


def interfaces() -> list[str]:
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def _resolve(name: str) -> str:
    if set(interfaces()) - {"lo"}:
        return "not tried: this worker has network interfaces besides lo"
    try:
        return f"resolved: {socket.getaddrinfo(name, 443)[0][4]}"
    except OSError as exc:
        return f"failed: {exc}"


def _processes() -> dict[str, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[entry.name] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def _status() -> dict[str, str]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"CapEff", "CapPrm", "NoNewPrivs", "Seccomp"}:
            fields[key] = value.strip()
    return fields


def _syscalls() -> dict[str, str]:
    """What the seccomp filter (and the missing capabilities) say to calls a plugin never needs."""
    libc = ctypes.CDLL(None, use_errno=True)
    attempts = {
        "unshare(CLONE_NEWUSER)": lambda: libc.unshare(0x10000000),
        "ptrace(PTRACE_ATTACH, 1)": lambda: libc.ptrace(16, 1, 0, 0),
        "mount(tmpfs)": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
    }
    outcome = {}
    for name, attempt in attempts.items():
        result = attempt()
        outcome[name] = "succeeded" if result >= 0 else f"failed: {errno.errorcode.get(ctypes.get_errno(), '?')}"
    return outcome


@plugin.handler
def probe(args: dict, ctx: InvocationContext) -> dict:
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "status": _status(),
        "pid": os.getpid(),
        "home": os.environ.get("HOME", ""),
        "interfaces": interfaces(),
        "processes": _processes(),
        "syscalls": _syscalls(),
        "read": {path: _read(path) for path in args.get("read", [])},
        "list": {path: _list(path) for path in args.get("list", [])},
        "write": {path: _write(path) for path in args.get("write", [])},
        "connect": {f"{host}:{port}": _connect(host, port) for host, port in args.get("connect", [])},
        "resolve": {name: _resolve(name) for name in args.get("resolve", [])},
    }
