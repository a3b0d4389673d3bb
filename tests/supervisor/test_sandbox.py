"""The process backend's sandbox (backends/sandbox.py, backends/seccomp.py, ppp_sdk/sandbox.py).

Real workers, real namespaces: forked from the zygote and spawned under bwrap, Python and Java.
What a plugin can reach over HTTP is in tests/reliability/test_isolation_process.py.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from platform_core.supervisor.backends import sandbox as sandboxes
from platform_core.supervisor.backends import seccomp
from platform_core.supervisor.backends.process import ProcessBackend
from platform_core.supervisor.model import PluginRef, State
from platform_core.supervisor.service import Supervisor
from tests.supervisor.conftest import alive
from tests.supervisor.test_zygote import PROBE, invoke, probe_dir, probe_launchers  # noqa: F401 — fixture
from tests.support.platform import REPO
from tests.support.waits import wait_until

SDK = REPO / "plugin_workers" / "python"
JAR = REPO / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
ADD = PluginRef(name="add_numbers", runtime="java", entrypoint="add_numbers")

SECCOMP_CHECK = textwrap.dedent(
    """
    import ctypes, errno, os, sys, threading
    from ppp_sdk.sandbox import load_seccomp
    load_seccomp(sys.stdin.buffer.read())
    libc = ctypes.CDLL(None, use_errno=True)
    def errno_of(result):
        return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
    outcome = {
        "unshare(NEWUSER)": errno_of(libc.unshare(0x10000000)),
        "unshare(NEWNET)": errno_of(libc.unshare(0x40000000)),
        "ptrace(ATTACH)": errno_of(libc.ptrace(16, os.getppid(), 0, 0)),
        "mount": errno_of(libc.mount(b"none", b"/mnt", b"tmpfs", 0, None)),
        "clone(NEWPID)": errno_of(libc.syscall(56, 0x20000000 | 17, 0, 0, 0, 0)),
        "clone3": errno_of(libc.syscall(435, 0, 0)),
    }
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    outcome["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    thread = threading.Thread(target=lambda: None); thread.start(); thread.join()
    outcome["thread"] = "ok"
    print(outcome)
    """
)


def make(socket_root: Path, **options) -> Supervisor:
    backend = ProcessBackend(supervisor_id="python-test", socket_root=socket_root, **options)
    return Supervisor(
        runtime="python", supervisor_id="python-test", backends={"process": backend}, default_backend="process"
    )


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def status_of(pid: int) -> dict[str, str]:
    fields = (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: value.strip() for key, _, value in fields}


def namespaces(pid: int | str) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in ("mnt", "net", "pid", "ipc", "uts")}


def assert_sandboxed(pid: int) -> None:
    """The process ``pid`` (a plugin's, as the host sees it) is in the sandbox."""
    status = status_of(pid)
    assert status["Uid"].split() == [str(sandboxes.DEFAULT_UID)] * 4
    assert status["Gid"].split() == [str(sandboxes.DEFAULT_GID)] * 4
    assert status["Groups"] == ""
    assert status["CapEff"] == status["CapPrm"] == status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    ours = namespaces("self")
    theirs = namespaces(pid)
    for kind in ours:
        assert theirs[kind] != ours[kind], f"{kind} namespace shared with the supervisor"


def test_the_seccomp_filter_refuses_what_plugins_never_need_and_allows_the_rest():
    program = seccomp.worker_filter()
    assert len(program) % 8 == 0 and len(program) > 8 * len(seccomp.DENIED)
    result = subprocess.run(
        [sys.executable, "-c", SECCOMP_CHECK],
        input=program,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(SDK)},
        timeout=30,
        check=True,
    )
    outcome = eval(result.stdout.decode())  # a dict literal printed by our own check
    assert outcome == {
        "unshare(NEWUSER)": "EPERM",
        "unshare(NEWNET)": "EPERM",
        "ptrace(ATTACH)": "EPERM",
        "mount": "EPERM",
        "clone(NEWPID)": "EPERM",
        "clone3": "ENOSYS",
        "fork": 7,
        "thread": "ok",
    }


def test_runtime_paths_are_the_interpreter_the_sdk_and_named_files(tmp_path):
    python = Path(sys.executable)
    paths = sandboxes.runtime_paths([str(python), "-m", "ppp_sdk", str(JAR)], {"PYTHONPATH": f"{SDK}:{tmp_path}"})
    assert Path(sys.prefix) in paths, "the virtualenv"
    assert Path(sys.base_prefix).resolve() in paths, "the Python it was made from"
    assert SDK in paths and tmp_path in paths
    if JAR.exists():
        assert JAR in paths
    assert not any(p == Path("/usr") or p.is_relative_to("/usr") for p in paths), "/usr is bound whole"


def test_paths_holding_the_platforms_secrets_are_never_shown(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    sandbox, _ = sandboxes.detect("auto", forbidden=[var])
    assert sandbox is not None
    command = sandbox.wrap(
        [sys.executable, "-c", "pass"],
        directory=tmp_path / "w",
        cwd=tmp_path,
        env={"PYTHONPATH": f"{SDK}:{tmp_path}:{var}"},
        seccomp_fd=3,
    )
    binds = {command[i + 1] for i, arg in enumerate(command) if arg in ("--ro-bind", "--bind")}
    assert str(SDK) in binds
    assert str(tmp_path) not in binds, "an ancestor of var/ would show it"
    assert str(var) not in binds


def test_detection_reports_why_there_is_no_sandbox(monkeypatch):
    assert sandboxes.detect("off") == (None, sandboxes.Status("off", False, sandboxes.detect("off")[1].detail))
    assert "WORKER_SANDBOX=off" in sandboxes.detect("off")[1].detail
    monkeypatch.setattr(sandboxes.shutil, "which", lambda name: None)
    sandbox, status = sandboxes.detect("required")
    assert sandbox is None
    assert status == sandboxes.Status(
        "required", False, "unavailable: bubblewrap is not installed (apt-get install bubblewrap)"
    )


async def test_required_without_a_sandbox_refuses_to_start_workers(socket_root, monkeypatch):
    monkeypatch.setattr(sandboxes.shutil, "which", lambda name: None)
    supervisor = make(socket_root, sandbox="required")
    with pytest.raises(Exception, match="WORKER_SANDBOX=required and the sandbox is unavailable"):
        await supervisor.allocate(PROBE)
    await supervisor.shutdown()


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "spawned"])
async def test_a_sandboxed_worker_is_confined_and_reports_exits_as_before(socket_root, probe_dir, zygote):  # noqa: F811
    supervisor = make(socket_root, launchers=probe_launchers(probe_dir), zygote=zygote)
    assert supervisor.backends["process"].isolation.sandboxed
    worker, events, _, _ = await supervisor.allocate(PROBE)
    how = next(e.detail for e in events if e.state == State.SPAWNING)
    assert ("fork from zygote (sandboxed)" if zygote else "spawn process (sandboxed)") in how
    # The supervisor's pid is the relay (forked) or bwrap (spawned); the plugin runs below it.
    plugin_pid = worker.pid
    while children_of(plugin_pid):
        plugin_pid = children_of(plugin_pid)[-1]
    assert_sandboxed(plugin_pid)

    directory = Path(worker.address.removeprefix("unix://")).parent
    assert directory.stat().st_uid == sandboxes.DEFAULT_UID
    assert oct(directory.stat().st_mode & 0o7777) == "0o2770"
    # The pid file a restarted supervisor trusts is out of the worker's reach.
    pid_file = socket_root / "python-test.pids" / f"{directory.name}.pid"
    assert pid_file.read_text().split()[0] == str(worker.pid)
    assert not (directory / "worker.pid").exists()
    assert oct(pid_file.parent.stat().st_mode & 0o777) == "0o700"

    environ = await invoke(worker, {"environ": True})
    assert "PPP_PARENT_PID" not in environ, "PID 1 of its namespace: no parent to watch; the sandbox kills it"
    assert environ["HOME"] == str(directory)
    outcome = await supervisor.release(worker.worker_id)
    # SIGTERM reaches the worker inside bwrap (bwrap ignores it): it stops gracefully, exit 0.
    assert outcome.exit_code == 0 and outcome.exit_cause is None
    assert not directory.exists() and not pid_file.exists()

    crashing, _, _, _ = await supervisor.allocate(PROBE)
    with pytest.raises(Exception):  # noqa: B017 — the connection breaks as the worker exits
        await invoke(crashing, {"exit": 3})
    await wait_until(lambda: crashing.state == State.FAILED, what="the crashed worker marked failed")
    outcome = await supervisor.release(crashing.worker_id)
    assert outcome.exit_code == 3, "the exit status comes through the relay (or bwrap)"

    killed, _, _, _ = await supervisor.allocate(PROBE)
    os.kill(killed.pid, signal.SIGKILL)
    outcome = await supervisor.release(killed.worker_id, retire=True)
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.exit_cause is not None and "SIGKILL, not by the platform" in outcome.exit_cause.detail
    await supervisor.shutdown()
    assert not alive(plugin_pid)


async def test_a_worker_cannot_make_a_restarted_supervisor_kill_another_process(socket_root, probe_dir):  # noqa: F811
    first = make(socket_root, launchers=probe_launchers(probe_dir))
    worker, _, _, _ = await first.allocate(PROBE)
    directory = Path(worker.address.removeprefix("unix://")).parent
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: ASYNC220 — returns at once
    try:
        # What a worker could do in its own directory: claim another process as its own.
        started = Path(f"/proc/{bystander.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        (directory / "worker.pid").write_text(f"{bystander.pid} {started}\n")
        again = ProcessBackend(supervisor_id="python-test", socket_root=socket_root)
        await again.reap_orphans()
        assert bystander.poll() is None, "the supervisor trusted a pid file the worker wrote"
        assert not alive(worker.pid), "the worker itself is gone"
    finally:
        bystander.kill()
        bystander.wait()
    await first.shutdown()


@pytest.mark.java
async def test_a_java_worker_runs_sandboxed(socket_root):
    if not JAR.exists():
        pytest.fail(f"{JAR.relative_to(REPO)} is missing: run plugin_workers/java/build.sh")
    backend = ProcessBackend(supervisor_id="java-test", socket_root=socket_root)
    supervisor = Supervisor(
        runtime="java", supervisor_id="java-test", backends={"process": backend}, default_backend="process"
    )
    worker, _, _, _ = await supervisor.allocate(dataclasses.replace(ADD))
    jvm = worker.pid
    while children_of(jvm):
        jvm = children_of(jvm)[-1]
    assert "java" in Path(f"/proc/{jvm}/cmdline").read_bytes().decode()
    assert_sandboxed(jvm)
    assert (await supervisor.release(worker.worker_id)).exit_code in (0, -signal.SIGTERM)
    await supervisor.shutdown()


def test_without_root_the_sandbox_is_a_user_namespace(socket_root):
    """A supervisor that is not root: bwrap makes a user namespace (uid 65534 inside, its own outside)."""
    supervisor_uid = 65501
    socket_root.chmod(0o755)  # the non-root supervisor's own directory, in /tmp
    directory = socket_root / "w"
    directory.mkdir()
    os.chown(directory, supervisor_uid, supervisor_uid)
    privileged, _ = sandboxes.detect("auto")
    assert privileged is not None
    sandbox = dataclasses.replace(privileged, privileged=False)
    seccomp_fd = sandboxes.seccomp_pipe(sandbox.program)
    try:
        command = sandbox.wrap(
            ["/usr/bin/sh", "-c", "id -u; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status; touch $0/x"],
            directory=directory,
            cwd=directory,
            env={},
            seccomp_fd=seccomp_fd,
        )
        command += [str(directory)]  # $0 of the shell script
        drop = ["setpriv", f"--reuid={supervisor_uid}", f"--regid={supervisor_uid}", "--clear-groups", "--"]
        result = subprocess.run(
            [*drop, *command], capture_output=True, text=True, timeout=30, pass_fds=(seccomp_fd,), check=False
        )
    finally:
        os.close(seccomp_fd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == str(sandboxes.UNPRIVILEGED_INNER_UID)
    assert "Seccomp:" in lines and lines[lines.index("Seccomp:") + 1] == "2"
    assert lines[lines.index("CapEff:") + 1] == "0000000000000000"
    assert (directory / "x").stat().st_uid == supervisor_uid, "outside, the worker is the supervisor's uid"
