"""A pids cgroup per worker of the process backend: a fork bomb stops at the plugin's pids limit.

RLIMIT_NPROC cannot do this job: it counts every process of the user (the supervisor's own
user, often root, for whom it is not even enforced). A cgroup counts only the worker and what
it starts (threads included, as ``--pids-limit`` does on the docker backend), and it also
finds every one of them at the end, even those that left the worker's process group with
``setsid()``, so that none survives its worker.

Available when the supervisor may create cgroups on a pids hierarchy: cgroup v1's
``/sys/fs/cgroup/pids``, or cgroup v2 with the pids controller enabled at its root (root
privileges either way). Otherwise ``PidsCgroups.detect`` answers None and workers run without
a pids limit on this backend (docs/RELIABILITY.md).

Layout: ``<hierarchy>/plugin-platform/<supervisor id>-<digest of its socket root>/<worker id>``,
so that a supervisor that restarts finds (and empties) the cgroups of its earlier life and of
nobody else, not even of a supervisor of the same id with another socket root (test runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)

V1_HIERARCHY = Path("/sys/fs/cgroup/pids")
V2_HIERARCHY = Path("/sys/fs/cgroup")
PARENT = "plugin-platform"
# A fork bomb refills the slots its killed processes free; each round kills all it finds.
KILL_ROUNDS = 200
# An empty cgroup this old is left over from a supervisor killed with its workers (a live
# worker's cgroup is empty for microseconds, between its creation and the worker's move).
STALE_EMPTY_S = 60.0


def _pids_hierarchy() -> tuple[Path, bool] | None:
    """(mount point, is cgroup v2) of a pids hierarchy we may create cgroups in, or None."""
    if (V1_HIERARCHY / "cgroup.procs").exists() and os.access(V1_HIERARCHY, os.W_OK):
        return V1_HIERARCHY, False
    controllers = V2_HIERARCHY / "cgroup.subtree_control"
    with contextlib.suppress(OSError):
        if "pids" in controllers.read_text().split() and os.access(V2_HIERARCHY, os.W_OK):
            return V2_HIERARCHY, True
    return None


def available() -> bool:
    """Whether this process could give workers pids cgroups (without creating any)."""
    return _pids_hierarchy() is not None


class PidsCgroups:
    """The pids cgroups of one supervisor's workers."""

    def __init__(self, hierarchy: Path, supervisor_id: str, scope: str, *, v2: bool) -> None:
        self.hierarchy = hierarchy
        digest = hashlib.sha256(scope.encode()).hexdigest()[:8]
        self.base = hierarchy / PARENT / f"{supervisor_id}-{digest}"
        self.v2 = v2

    @classmethod
    def detect(cls, supervisor_id: str, *, scope: str) -> PidsCgroups | None:
        """The cgroups of supervisor ``supervisor_id`` whose workers live under ``scope`` (its socket
        root); None where pids cgroups cannot be had."""
        found = _pids_hierarchy()
        if found is None:
            return None
        hierarchy, v2 = found
        cgroups = cls(hierarchy, supervisor_id, scope, v2=v2)
        try:
            cgroups._prepare()
        except OSError as exc:
            log.warning("no pids cgroups for workers (%s): forks of process workers are not bounded", exc)
            return None
        return cgroups

    def _prepare(self) -> None:
        self._sweep()
        self._ensure_base()

    def _ensure_base(self) -> None:
        """Our directory (again, if another supervisor's sweep found it empty and removed it)."""
        if self.base.is_dir():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        if self.v2:  # children get a pids.max only if their parent delegates the controller
            for directory in (self.base.parent, self.base):
                (directory / "cgroup.subtree_control").write_text("+pids")

    def create(self, worker_id: str, pids_max: int) -> Path:
        """A fresh cgroup for ``worker_id`` allowing ``pids_max`` tasks (processes and threads)."""
        self._ensure_base()
        group = self.base / worker_id
        group.mkdir(exist_ok=True)
        (group / "pids.max").write_text(str(pids_max) if pids_max > 0 else "max")
        return group

    def _sweep(self) -> None:
        """Delete empty, old cgroups of any supervisor (killed ones never clean up after themselves)."""
        parent = self.hierarchy / PARENT
        if not parent.is_dir():
            return
        now = time.time()
        for base in [d for d in parent.iterdir() if d.is_dir()]:
            for group in [d for d in base.iterdir() if d.is_dir()]:
                with contextlib.suppress(OSError):
                    if not self.members(group) and now - group.stat().st_mtime > STALE_EMPTY_S:
                        group.rmdir()
            with contextlib.suppress(OSError):  # only once empty
                if now - base.stat().st_mtime > STALE_EMPTY_S:
                    base.rmdir()

    @staticmethod
    def adopt(group: Path, pid: int) -> None:
        """Move process ``pid`` (and the threads it has) into ``group``; what it starts stays there."""
        (group / "cgroup.procs").write_text(str(pid))

    @staticmethod
    def members(group: Path) -> list[int]:
        try:
            return [int(line) for line in (group / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self, group: Path) -> int:
        """SIGKILL every process in ``group`` until none is left; how many were found."""
        if self.v2 and (group / "cgroup.kill").exists():
            found = len(self.members(group))
            with contextlib.suppress(OSError):
                (group / "cgroup.kill").write_text("1")
            return found
        killed: set[int] = set()
        for _ in range(KILL_ROUNDS):
            pids = self.members(group)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed.update(pids)
        return len(killed)

    async def remove(self, group: Path, timeout_s: float = 5.0) -> None:
        """Kill what is left in ``group`` and delete it (once its last process is gone)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self.kill(group)
            try:
                group.rmdir()  # noqa: ASYNC240 — one rmdir(2) on cgroupfs, never slow
                return
            except FileNotFoundError:
                return
            except OSError as exc:  # EBUSY: dying processes are still counted for a moment
                if loop.time() >= deadline:
                    log.warning("cannot remove cgroup %s: %s", group, exc)
                    return
            await asyncio.sleep(0.01)

    async def reap(self) -> int:
        """Empty and delete the cgroups an earlier life of this supervisor left; processes killed."""
        killed = 0
        if not self.base.is_dir():
            return 0
        for group in [p for p in self.base.iterdir() if p.is_dir()]:
            killed += self.kill(group)
            await self.remove(group)
        return killed

    async def close(self) -> None:
        """Empty and delete this supervisor's cgroups and their parent (at shutdown)."""
        await self.reap()
        with contextlib.suppress(OSError):  # another supervisor's may still be in use
            self.base.rmdir()
