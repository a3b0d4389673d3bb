"""Python workers forked from the zygote: isolation, output, exit codes, orphans, fallbacks."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from platform_core.rpc import ppp_grpc, ppp_pb2
from platform_core.supervisor.backends import cgroups
from platform_core.supervisor.backends import process as process_backend
from platform_core.supervisor.backends.process import Launcher, ProcessBackend, default_launchers
from platform_core.supervisor.errors import WorkerFailedToStart
from platform_core.supervisor.model import Limits, PluginRef, State, Worker
from platform_core.supervisor.service import Supervisor
from tests.supervisor.conftest import alive
from tests.support.platform import REPO
from tests.support.waits import wait_for, wait_until

PYTHON_ROOT = REPO / "plugin_workers" / "python"
SUBTRACT = PluginRef(name="subtract_numbers", runtime="python", entrypoint="plugins.subtract_numbers:plugin")
PROBE = PluginRef(name="zyg_probe", runtime="python", entrypoint="zyg_probe:plugin")

PROBE_SOURCE = """
import os, subprocess, sys
from ppp_sdk import Plugin

print("probe imported (stdout)", flush=True)
print("probe imported (stderr)", file=sys.stderr, flush=True)
plugin = Plugin(primitive="zyg_probe")

@plugin.handler
def run(args, ctx):
    if "exit" in args:
        os._exit(args["exit"])
    if args.get("environ"):
        return dict(os.environ)
    if args.get("spawn"):  # a process of the plugin's own, in the worker's process group
        return {"pid": subprocess.Popen(["sleep", "60"]).pid}
    return {}
"""
CGROUP_SOURCE = (
    "from ppp_sdk import Plugin\n"
    "print('import-time cgroup', open('/proc/self/cgroup').read().replace(chr(10), ' '), flush=True)\n"
    "plugin = Plugin(primitive='zyg_cgroup')\n"
)
THREADS_SOURCE = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "zyg_probe.py").write_text(PROBE_SOURCE)
    (tmp_path / "zyg_threads.py").write_text(THREADS_SOURCE)
    (tmp_path / "zyg_cgroup.py").write_text(CGROUP_SOURCE)
    tmp_path.chmod(0o755)  # sandboxed workers run as another uid: plugin code must be readable by it
    return tmp_path


def probe_launchers(probe_dir: Path) -> dict[str, Launcher]:
    """The default launchers, with ``probe_dir`` on the Python workers' (and zygote's) path."""
    launchers = default_launchers()
    python = launchers["python"]
    launchers["python"] = dataclasses.replace(
        python, env={**python.env, "PYTHONPATH": f"{python.env['PYTHONPATH']}:{probe_dir}"}
    )
    return launchers


def make(socket_root: Path, **backend_options) -> Supervisor:
    # The zygote's own mechanics, unsandboxed; tests/supervisor/test_sandbox.py has them sandboxed.
    backend_options.setdefault("sandbox", "off")
    backend = ProcessBackend(supervisor_id="python-test", socket_root=socket_root, **backend_options)
    return Supervisor(
        runtime="python", supervisor_id="python-test", backends={"process": backend}, default_backend="process"
    )


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def sockets_of(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


async def invoke(worker: Worker, arguments: dict) -> dict:
    async with grpc.aio.insecure_channel(worker.address) as channel:
        request = ppp_pb2.InvokeRequest(primitive="zyg_probe", arguments=json.dumps(arguments).encode())
        async for message in ppp_grpc.PluginWorkerStub(channel).Invoke(request, timeout=10):
            if message.HasField("completed"):
                return json.loads(message.completed.output)
    raise AssertionError("no Completed message")


async def test_python_workers_are_forked_from_the_zygote_and_isolated(socket_root, probe_dir, monkeypatch):
    monkeypatch.setenv("SUPERVISOR_ONLY_SECRET", "hunter2")
    supervisor = make(socket_root, launchers=probe_launchers(probe_dir))
    plugin = dataclasses.replace(PROBE, limits=Limits(memory_bytes=300 * 1024 * 1024, cpu_seconds=7))
    worker, events, _, _ = await supervisor.allocate(plugin)
    assert "forked from zygote" in next(e.detail for e in events if e.state == State.STARTING)
    zygote = parent_of(worker.pid)
    assert zygote != os.getpid()
    zygote_cmdline = Path(f"/proc/{zygote}/cmdline").read_bytes().decode()
    assert "ppp_sdk.zygote" in zygote_cmdline
    assert str(socket_root) in zygote_cmdline, "leftover checks find the zygote and its workers by the root"

    assert os.getsid(worker.pid) == os.getpgid(worker.pid) == worker.pid, "its own session and process group"
    limits = {
        line[:26].strip(): line[26:].split() for line in Path(f"/proc/{worker.pid}/limits").read_text().splitlines()
    }
    assert limits["Max address space"][:2] == [str(300 * 1024 * 1024)] * 2
    assert limits["Max cpu time"][:2] == ["7", "7"]
    assert limits["Max open files"][:2] == ["1024", "1024"]
    assert limits["Max file size"][:2] == [str(256 * 1024 * 1024)] * 2
    assert limits["Max core file size"][:2] == ["0", "0"]

    directory = Path(worker.address.removeprefix("unix://")).parent
    environ = await invoke(worker, {"environ": True})
    assert set(environ) == {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PPP_PARENT_PID",
        "PPP_WORKER_ID",
        "PYTHONPATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "MALLOC_ARENA_MAX",
    }
    assert environ["HOME"] == environ["TMPDIR"] == str(directory)
    assert environ["PPP_PARENT_PID"] == str(zygote), "the SDK checks the parent it dies with: the zygote"
    assert environ["PPP_WORKER_ID"] == worker.worker_id
    # /proc/PID/environ shows the environment a process was exec'd with: for a forked worker,
    # the zygote's (as scrubbed as the worker's). Neither holds anything of the supervisor's.
    for pid in (zygote, worker.pid):
        assert b"hunter2" not in Path(f"/proc/{pid}/environ").read_bytes(), "no supervisor variable leaks"

    assert os.readlink(f"/proc/{worker.pid}/cwd") == str(PYTHON_ROOT)
    assert "Umask:\t0077" in Path(f"/proc/{worker.pid}/status").read_text()
    assert os.readlink(f"/proc/{worker.pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{worker.pid}/fd/1") == os.readlink(f"/proc/{worker.pid}/fd/2")
    assert os.readlink(f"/proc/{worker.pid}/fd/1").startswith("pipe:")
    assert not sockets_of(worker.pid) & sockets_of(zygote), "no descriptor of the zygote stays open in a worker"

    outcome = await supervisor.release(worker.worker_id)
    assert outcome.exit_code == 0
    assert not alive(worker.pid)
    await supervisor.shutdown()
    assert not alive(zygote), "shutdown stops the zygote"
    assert not list(socket_root.glob("*zygote.pid"))


async def test_forked_workers_output_and_exit_codes(socket_root, probe_dir):
    supervisor = make(socket_root, launchers=probe_launchers(probe_dir))
    worker, _, _, _ = await supervisor.allocate(PROBE)
    outcome = await supervisor.release(worker.worker_id)
    assert "probe imported (stdout)" in outcome.output
    assert "probe imported (stderr)" in outcome.output
    assert outcome.exit_code == 0, "SIGTERM: the SDK stops gracefully"

    crashing, _, _, _ = await supervisor.allocate(PROBE)
    with pytest.raises(grpc.aio.AioRpcError):
        await invoke(crashing, {"exit": 3})
    await wait_until(lambda: crashing.state == State.FAILED, what="the crashed worker marked failed")
    assert (await supervisor.release(crashing.worker_id)).exit_code == 3, "the zygote reports the exit status"

    killed, _, _, _ = await supervisor.allocate(PROBE)
    assert (await supervisor.cancel(killed.worker_id)).exit_code == -signal.SIGKILL

    with pytest.raises(WorkerFailedToStart) as caught:
        await supervisor.allocate(dataclasses.replace(PROBE, entrypoint="zyg_probe:nothing"))
    assert "exited with code 1" in str(caught.value)
    assert "zyg_probe:nothing: not a ppp_sdk.Plugin" in str(caught.value)
    await supervisor.shutdown()


async def test_a_dead_zygote_falls_back_to_spawning_then_comes_back(socket_root, monkeypatch, caplog):
    supervisor = make(socket_root)
    first, _, _, _ = await supervisor.allocate(SUBTRACT)
    zygote = parent_of(first.pid)
    with caplog.at_level(logging.WARNING):
        os.kill(zygote, signal.SIGKILL)
        # Its workers die with it (PR_SET_PDEATHSIG); the pidfd tells the supervisor.
        await wait_until(lambda: first.state == State.FAILED, what="the first worker marked failed")
    assert any("zygote" in record.message and "gone" in record.message for record in caplog.records)

    spawned, events, _, _ = await supervisor.allocate(SUBTRACT)
    assert parent_of(spawned.pid) == os.getpid(), "spawned by the supervisor itself"
    assert "process started" in next(e.detail for e in events if e.state == State.STARTING)

    monkeypatch.setattr(process_backend, "ZYGOTE_RESTART_INTERVAL_S", 0.0)
    forked, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert parent_of(forked.pid) not in {os.getpid(), zygote}, "a new zygote forked it"
    assert (await supervisor.release(first.worker_id)).exit_code == -signal.SIGKILL
    for worker in (spawned, forked):
        assert (await supervisor.release(worker.worker_id)).exit_code == 0
    await supervisor.shutdown()


async def test_a_zygote_that_cannot_start_or_fork_never_fails_an_allocation(socket_root, probe_dir, caplog):
    broken = probe_launchers(probe_dir)
    broken["python"] = dataclasses.replace(broken["python"], zygote_argv=[sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = make(socket_root, launchers=broken)
    with caplog.at_level(logging.WARNING):
        worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert parent_of(worker.pid) == os.getpid()
    assert any("cannot start the python zygote" in record.message for record in caplog.records)
    await supervisor.shutdown()

    caplog.clear()
    # A preloaded module that starts a thread: forking now could deadlock the child, so the zygote refuses.
    threaded = make(socket_root, launchers=probe_launchers(probe_dir), zygote_preload=["zyg_threads"])
    with caplog.at_level(logging.WARNING):
        worker, _, _, _ = await threaded.allocate(SUBTRACT)
    assert parent_of(worker.pid) == os.getpid()
    assert any("refusing to fork" in record.message for record in caplog.records)
    await threaded.shutdown()


@pytest.mark.skipif(not cgroups.available(), reason="no pids cgroups here (needs root)")
async def test_a_forked_worker_is_in_its_pids_cgroup_before_its_plugin_runs(socket_root, probe_dir):
    supervisor = make(socket_root, launchers=probe_launchers(probe_dir))
    plugin = dataclasses.replace(PROBE, name="zyg_cgroup", entrypoint="zyg_cgroup:plugin")
    for _ in range(3):  # the plugin's import ran a millisecond after the fork, every time
        worker, _, _, _ = await supervisor.allocate(plugin)
        outcome = await supervisor.release(worker.worker_id)
        assert "/plugin-platform/python-test-" in outcome.output and f"/{worker.worker_id} " in outcome.output
    await supervisor.shutdown()


async def test_the_zygote_can_be_turned_off(socket_root):
    supervisor = make(socket_root, zygote=False)
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    assert parent_of(worker.pid) == os.getpid()
    await supervisor.shutdown()


async def test_a_zygote_of_an_earlier_life_is_reaped(socket_root):
    supervisor = make(socket_root)
    worker, _, _, _ = await supervisor.allocate(SUBTRACT)
    zygote = parent_of(worker.pid)
    # The supervisor "crashes": a new life of it finds the worker and the zygote by their pid files.
    supervisor.workers.clear()
    assert await ProcessBackend(supervisor_id="python-test", socket_root=socket_root).reap_orphans() == 1
    await worker.runtime_state["process"].wait()
    await wait_until(lambda: not alive(zygote), what="the orphaned zygote reaped", timeout_s=5)
    assert not alive(worker.pid)
    assert not list(socket_root.glob("*zygote.pid"))
    await supervisor.shutdown()


DRIVER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from tests.supervisor.test_zygote import PROBE, invoke, make, parent_of, probe_launchers

    async def main():
        supervisor = make(Path(sys.argv[1]), launchers=probe_launchers(Path(sys.argv[2])))
        worker, _, _, _ = await supervisor.allocate(PROBE)
        spawned = (await invoke(worker, {"spawn": True}))["pid"]
        print(json.dumps({"zygote": parent_of(worker.pid), "worker": worker.pid, "spawned": spawned}), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_a_killed_supervisor_takes_the_zygote_and_every_worker_process_with_it(socket_root, probe_dir):
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(socket_root), str(probe_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: dict[str, int] = {}
    try:
        pids = json.loads(driver.stdout.readline())
        assert all(alive(pid) for pid in pids.values())
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        wait_for(lambda: not alive(pids["zygote"]), what="the zygote died with its supervisor", timeout_s=5)
        wait_for(lambda: not alive(pids["worker"]), what="the worker died with its zygote", timeout_s=5)
        wait_for(
            lambda: not alive(pids["spawned"]),
            what="so did what the worker started (the zygote kills process groups)",
            timeout_s=5,
        )
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in pids.values():  # only processes this test started
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
