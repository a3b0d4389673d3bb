"""Which "host" a process is on, as far as worker sockets are concerned.

A gateway may connect to a worker's Unix socket only if it sees the same socket file the
supervisor made: same kernel, and the same directory behind the socket root. That is what the
host id captures when it is derived: the kernel's boot id (random per boot of a machine), the
socket root's real path and the identity (device, inode) of the directory there. It changes
exactly when the file system view changes: another machine, or a private mount namespace with
its own tmpfs at the socket root, gets another id; containers that bind-mount one host
directory at the same path (compose) share it without configuration.

``PLATFORM_HOST_ID`` sets the id explicitly (both sides must agree), e.g. to force the relay.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def derived_host_id(socket_root: str) -> str | None:
    """The host id of this process's view of ``socket_root``; None while the directory is missing
    (a supervisor creates it at start: until then nothing can be shared)."""
    root = os.path.realpath(socket_root)
    try:
        stat = os.stat(root)
    except OSError:
        return None
    try:
        boot = _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: the host name stands in for the machine
        boot = socket.gethostname()
    digest = hashlib.sha256(f"{boot}|{root}|{stat.st_dev}:{stat.st_ino}".encode()).hexdigest()
    return f"h-{digest[:16]}"


class LocalHost:
    """This process's host id (explicit, or derived once the socket root exists) and name."""

    def __init__(self, *, socket_root: str, explicit_id: str = "", name: str = "") -> None:
        self.socket_root = socket_root
        self._id = explicit_id or None
        self.name = name or socket.gethostname()

    @property
    def id(self) -> str:
        if self._id is None:
            derived = derived_host_id(self.socket_root)
            if derived is None:
                # Not cached: the directory may appear later (a supervisor starting after us).
                return "h-no-socket-root"
            self._id = derived
        return self._id

    def sees(self, host_id: str) -> bool:
        """Whether a worker advertised on ``host_id`` is reachable here by its Unix socket.

        An empty id comes from a supervisor that predates host ids: it shared its socket
        directory with the gateway, which was the only possible setup then."""
        return not host_id or host_id == self.id


def local_host() -> LocalHost:
    """The host of this process, from the settings (one per process)."""
    global _local
    if _local is None:
        from django.conf import settings

        _local = LocalHost(
            socket_root=settings.PLATFORM_SOCKET_ROOT,
            explicit_id=settings.PLATFORM_HOST_ID,
            name=settings.PLATFORM_HOST_NAME,
        )
    return _local


_local: LocalHost | None = None
