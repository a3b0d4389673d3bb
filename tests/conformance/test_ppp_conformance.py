"""PPP conformance: every worker, whatever its language, passes the same checks.

Each launcher starts a real worker process on a Unix socket in a temporary directory, exactly
as a supervisor would, and the checks talk to it over gRPC with the generated Python stubs.
The protocol is language-neutral, so nothing below depends on which worker answers.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from platform_core.rpc._gen import plugin_protocol_pb2 as pb
from platform_core.rpc._gen import plugin_protocol_pb2_grpc as pb_grpc

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
JAVA_DIR = REPO / "plugin_workers" / "java"
JAVA_JAR = JAVA_DIR / "build" / "ppp-java-worker.jar"
PYTHON_WORKERS = REPO / "plugin_workers" / "python"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
OPERANDS = {"operand1": 10, "operand2": 5}


def java_command(service: str) -> Callable[[str], list[str]]:
    # The command line the platform's supervisor runs, from the repository root.
    return lambda socket_path: [
        "java", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-Xss512k",
        "-jar", "plugin_workers/java/build/ppp-java-worker.jar", "--service", service, "--unix", socket_path,
    ]  # fmt: skip


def python_command(plugin: str) -> Callable[[str], list[str]]:
    return lambda socket_path: [sys.executable, "-m", "ppp_sdk", plugin, "--unix", socket_path]


def require_java_build() -> None:
    """Fail (not skip) when the jar is missing or older than its sources: that is a broken setup."""
    if not JAVA_JAR.exists():
        pytest.fail(f"{JAVA_JAR.relative_to(REPO)} is missing: run plugin_workers/java/build.sh")
    inputs = [*JAVA_DIR.joinpath("src").rglob("*"), REPO / "protos" / "plugin_protocol.proto"]
    newer = [path for path in inputs if path.is_file() and path.stat().st_mtime > JAVA_JAR.stat().st_mtime]
    if newer:
        pytest.fail(f"the Java worker jar is older than {newer[0].relative_to(REPO)}: run plugin_workers/java/build.sh")


def require_python_sdk() -> None:
    if not (PYTHON_WORKERS / "ppp_sdk" / "__main__.py").exists():
        pytest.skip("the Python worker SDK (plugin_workers/python/ppp_sdk/__main__.py) is not written yet")


@dataclass(frozen=True)
class Launcher:
    """How to start one worker, and what its primitive answers for operand1=10, operand2=5."""

    primitive: str
    operation: str
    expected_result: float
    command: Callable[[str], list[str]]
    check_buildable: Callable[[], None]
    env: dict[str, str] = field(default_factory=dict)


LAUNCHERS = [
    pytest.param(
        Launcher("add_numbers", "add", 15.0, java_command("platform.workers.AddPluginService"), require_java_build),
        id="java-add_numbers",
        marks=pytest.mark.java,
    ),
    pytest.param(
        Launcher(
            "multiply_numbers", "multiply", 50.0,
            java_command("platform.workers.MultiplyPluginService"), require_java_build,
        ),
        id="java-multiply_numbers",
        marks=pytest.mark.java,
    ),
    pytest.param(
        Launcher(
            "subtract_numbers", "subtract", 5.0,
            python_command("plugins.subtract_numbers:plugin"),
            require_python_sdk,
            env={"PYTHONPATH": str(PYTHON_WORKERS)},
        ),
        id="python-subtract_numbers",
    ),
]  # fmt: skip


class Worker:
    """A worker process started by a launcher, and a gRPC stub connected to it."""

    def __init__(self, launcher: Launcher, directory: Path, extra_env: dict[str, str] | None = None) -> None:
        self.launcher = launcher
        self.socket_path = str(directory / "worker.sock")
        self.stderr_path = directory / "worker.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(
                launcher.command(self.socket_path),
                cwd=REPO,
                env={**os.environ, **launcher.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.channel: grpc.Channel | None = None

    def wait_until_serving(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll Health until it answers SERVING; returns the seconds that took."""
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with code {self.process.returncode} before serving:\n{self.stderr()}")
            if os.path.exists(self.socket_path) and self._health_once() == pb.HealthResponse.SERVING:
                break
            if time.monotonic() - started > timeout_s:
                pytest.fail(f"worker not serving after {timeout_s} s:\n{self.stderr()}")
            time.sleep(0.005)  # polling interval, not a guess at the start-up time
        self.channel = grpc.insecure_channel(f"unix:{self.socket_path}")
        return time.monotonic() - started

    def _health_once(self) -> int | None:
        # A fresh channel per attempt: a failed one would wait out gRPC's reconnect back-off.
        with grpc.insecure_channel(f"unix:{self.socket_path}") as channel:
            try:
                return pb_grpc.PluginWorkerStub(channel).Health(pb.HealthRequest(), timeout=2).status
            except grpc.RpcError:
                return None

    @property
    def stub(self) -> pb_grpc.PluginWorkerStub:
        assert self.channel is not None, "wait_until_serving() first"
        return pb_grpc.PluginWorkerStub(self.channel)

    def invoke(self, arguments: bytes, primitive: str | None = None) -> list[pb.PluginMessage]:
        request = pb.InvokeRequest(
            primitive=primitive or self.launcher.primitive,
            arguments=arguments,
            request_id="conformance-1",
            context=pb.Context(tenant_id="t1", user_id="u1", session_id="s1", request_id="conformance-1"),
        )
        return list(self.stub.Invoke(request, timeout=10))

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module", params=LAUNCHERS)
def launcher(request: pytest.FixtureRequest) -> Launcher:
    launcher: Launcher = request.param
    launcher.check_buildable()
    return launcher


@pytest.fixture(scope="module")
def worker(launcher: Launcher, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # Short directory names: a Unix socket path is limited to 108 bytes.
    running = Worker(launcher, tmp_path_factory.mktemp("w"))
    try:
        running.wait_until_serving()
        yield running
    finally:
        running.stop()


def kinds(messages: list[pb.PluginMessage]) -> list[str]:
    return [message.WhichOneof("kind") for message in messages]


def assert_well_formed_stream(messages: list[pb.PluginMessage]) -> None:
    """Exactly one terminal message, last; progress within 0..100."""
    names = kinds(messages)
    assert names, "Invoke returned an empty stream"
    terminals = [i for i, name in enumerate(names) if name in ("completed", "failed")]
    assert terminals == [len(names) - 1], f"exactly one terminal message, at the end: {names}"
    for message in messages:
        if message.HasField("progress"):
            assert 0.0 <= message.progress.percent <= 100.0, message


# --- Health and Init -------------------------------------------------------------------------


def test_health_is_serving_and_lists_the_primitive(worker: Worker) -> None:
    response = worker.stub.Health(pb.HealthRequest(), timeout=5)
    assert response.status == pb.HealthResponse.SERVING
    assert worker.launcher.primitive in response.primitives


def test_init_is_ok_and_lists_the_primitive(worker: Worker) -> None:
    response = worker.stub.Init(
        pb.InitRequest(context=pb.Context(tenant_id="t1", user_id="u1", session_id="s1", request_id="r1")),
        timeout=5,
    )
    assert response.ok, response.message
    assert response.message
    assert worker.launcher.primitive in response.primitives


# --- Invoke ----------------------------------------------------------------------------------


def test_invoke_streams_progress_then_completes_with_the_result(worker: Worker) -> None:
    messages = worker.invoke(json.dumps(OPERANDS).encode())

    assert_well_formed_stream(messages)
    names = kinds(messages)
    assert names[-1] == "completed", [str(m) for m in messages]
    assert "progress" in names[:-1], f"at least one Progress before Completed: {names}"
    output = b"".join(m.result_chunk.data for m in messages if m.HasField("result_chunk"))
    output += messages[-1].completed.output
    result = json.loads(output)
    assert math.isclose(result["result"], worker.launcher.expected_result)
    assert result["operation"] == worker.launcher.operation
    assert (result["operand1"], result["operand2"]) == (10, 5)


def test_a_worker_serves_many_invocations(worker: Worker) -> None:
    for operand2 in (1, 2.5, -3):
        messages = worker.invoke(json.dumps({"operand1": 10, "operand2": operand2}).encode())
        assert kinds(messages)[-1] == "completed"
        assert json.loads(messages[-1].completed.output)["operand2"] == operand2


BAD_INVOCATIONS = [
    pytest.param(b'{"operand1": 10, "operand2":', None, "invalid_input", "", id="bad-json"),
    pytest.param(b'{"operand1": "\xc3\x28", "operand2": 5}', None, "invalid_input", "", id="not-utf8"),
    pytest.param(b'{"operand1": 10}', None, "invalid_input", "operand2", id="missing-operand"),
    pytest.param(b'{"operand1": "ten", "operand2": 5}', None, "invalid_input", "operand1", id="string-operand"),
    pytest.param(b'{"operand1": 10, "operand2": 5}', "nonexistent", "unknown_primitive", "", id="wrong-primitive"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "primitive", "code", "names_field"), BAD_INVOCATIONS)
def test_bad_input_ends_with_one_failed_message(
    worker: Worker, arguments: bytes, primitive: str | None, code: str, names_field: str
) -> None:
    messages = worker.invoke(arguments, primitive)

    assert_well_formed_stream(messages)
    assert kinds(messages).count("failed") == 1
    failed = messages[-1].failed
    assert failed.code == code, failed
    assert failed.message
    assert names_field in failed.message, f"the message should name {names_field!r}: {failed.message!r}"
    # The worker survives bad input.
    assert worker.stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthResponse.SERVING


# --- Process contract with the supervisor ----------------------------------------------------


def test_sigterm_stops_the_worker_promptly(launcher: Launcher, tmp_path: Path) -> None:
    running = Worker(launcher, tmp_path)
    try:
        running.wait_until_serving()
        assert running.stub.Health(pb.HealthRequest(), timeout=5).status == pb.HealthResponse.SERVING
        started = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        running.process.wait(timeout=STOP_TIMEOUT_S)
        assert time.monotonic() - started < 2.0, "a worker must stop within about a second of SIGTERM"
    finally:
        running.stop()


# A stand-in supervisor: starts the worker with PPP_PARENT_PID set to itself, reports the
# worker's pid, then waits to be killed.
PARENT_SCRIPT = """
import os, subprocess, sys, time
worker = subprocess.Popen(sys.argv[1:], env={**os.environ, "PPP_PARENT_PID": str(os.getpid())})
print(worker.pid, flush=True)
time.sleep(3600)
"""


def test_worker_exits_when_its_supervisor_dies(launcher: Launcher, tmp_path: Path) -> None:
    socket_path = str(tmp_path / "worker.sock")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT, *launcher.command(socket_path)],
        cwd=REPO,
        env={**os.environ, **launcher.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    worker_pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not os.path.exists(socket_path):
            assert time.monotonic() < deadline, "the worker never created its socket"
            assert process_is_running(worker_pid), "the worker exited on its own"
            time.sleep(0.01)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5.0
        while process_is_running(worker_pid):
            assert time.monotonic() < deadline, "the worker outlived its supervisor by more than 5 s"
            time.sleep(0.02)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if process_is_running(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def process_is_running(pid: int) -> bool:
    """True unless the process is gone or a zombie (an orphan waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
