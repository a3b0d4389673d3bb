"""Fixtures for supervisor tests: a short private socket root, checked for leftover workers."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from platform_core.supervisor.backends.process import ProcessBackend
from platform_core.supervisor.service import Supervisor
from tests.support.platform import pids_using


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (and one reaped since the kill above is gone).
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def socket_root():
    root = Path(tempfile.mkdtemp(prefix="pps-", dir="/tmp"))
    yield root
    leftovers = pids_using(str(root))
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    assert not leftovers, f"workers left running: {leftovers}"


def make_supervisor(socket_root: Path, **kwargs) -> Supervisor:
    launchers = kwargs.pop("launchers", None)
    backend = ProcessBackend(supervisor_id="python-test", socket_root=socket_root, launchers=launchers)
    return Supervisor(
        runtime="python",
        supervisor_id="python-test",
        backends={"process": backend},
        default_backend="process",
        **kwargs,
    )
