"""PPP conformance of the platform's own workers (Python, Java, Node, and one written from the
proto alone): the conformance kit of ``manage.py pppcheck`` (platform_core/supervisor/conformance.py)
runs against each, started from its runtime's built-in recipe exactly as a supervisor starts it.
One set of checks exists; this file only says which workers must pass it, with which arguments.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from platform_core.runtimes import BUILTIN_RUNTIMES, ROOT, RuntimeSpec
from platform_core.supervisor.conformance import CHECKS, PASS, SKIP, Report, Target, run_checks
from tests.support import proto_worker

pytestmark = pytest.mark.e2e

JAVA_JAR = ROOT / "plugin_workers" / "java" / "build" / "ppp-java-worker.jar"
NODE_MODULES = ROOT / "plugin_workers" / "node" / "node_modules"
OPERANDS = json.dumps({"operand1": 10, "operand2": 5}).encode()
PROTO_WORKER = RuntimeSpec.create("proto", proto_worker.COMMAND)


def require_java_build() -> None:
    """Fail (not skip) when the jar is missing or older than its sources: that is a broken setup."""
    if not JAVA_JAR.exists():
        pytest.fail(f"{JAVA_JAR.relative_to(ROOT)} is missing: run plugin_workers/java/build.sh")
    inputs = [*(ROOT / "plugin_workers" / "java" / "src").rglob("*"), ROOT / "protos" / "plugin_protocol.proto"]
    newer = [path for path in inputs if path.is_file() and path.stat().st_mtime > JAVA_JAR.stat().st_mtime]
    if newer:
        pytest.fail(f"the Java worker jar is older than {newer[0].relative_to(ROOT)}: run plugin_workers/java/build.sh")


def require_node_modules() -> None:
    if not (NODE_MODULES / "@grpc" / "grpc-js").is_dir():
        pytest.fail(f"{NODE_MODULES.relative_to(ROOT)} lacks @grpc/grpc-js: run `make node` (npm ci)")


@dataclass(frozen=True)
class Case:
    target: Target
    # Checks this worker cannot exercise (and why), e.g. no primitive of it makes a large result.
    skipped: frozenset[str] = field(default_factory=frozenset)
    requires: tuple = ()


def calculator(runtime: str, entrypoint: str, expected: float, **options) -> Target:
    return Target(
        spec=BUILTIN_RUNTIMES[runtime],
        entrypoint=entrypoint,
        arguments=OPERANDS,
        expect={"result": expected, "operand1": 10, "operand2": 5},
        invalid_arguments=b'{"operand1": "ten", "operand2": 5}',
        **options,
    )


CASES = [
    pytest.param(
        Case(
            calculator("python", "plugins.subtract_numbers:plugin", 5.0),
            skipped=frozenset({"large_result"}),
        ),
        id="python-subtract_numbers",
    ),
    pytest.param(
        Case(
            Target(
                spec=BUILTIN_RUNTIMES["python"],
                entrypoint="plugins.hostile.huge_result:plugin",
                arguments=b'{"megabytes": 1}',
                large_arguments=b'{"megabytes": 2}',
                progress=False,
                memory_mb=512,
            ),
            skipped=frozenset({"invalid_arguments"}),
        ),
        id="python-huge_result",
    ),
    pytest.param(
        Case(
            calculator("java", "platform.workers.AddPluginService", 15.0),
            # No Java plugin makes a result over 1 MiB (InvocationStream chunks them all the same).
            skipped=frozenset({"large_result"}),
            requires=(require_java_build,),
        ),
        id="java-add_numbers",
        marks=pytest.mark.java,
    ),
    pytest.param(
        Case(
            calculator("java", "platform.workers.MultiplyPluginService", 50.0, orphan_check=False),
            skipped=frozenset({"large_result", "orphan"}),
            requires=(require_java_build,),
        ),
        id="java-multiply_numbers",
        marks=pytest.mark.java,
    ),
    pytest.param(
        Case(
            Target(
                spec=BUILTIN_RUNTIMES["node"],
                entrypoint="plugins/count_primes",
                arguments=b'{"limit": 100000}',
                expect={"count": 9592, "largest": 99991},
                invalid_arguments=b'{"limit": "many"}',
                large_arguments=b'{"limit": 2000000, "list": true}',
            ),
            requires=(require_node_modules,),
        ),
        id="node-count_primes",
        marks=pytest.mark.node,
    ),
    pytest.param(
        Case(
            Target(
                spec=PROTO_WORKER,
                arguments=b'{"text": "hi"}',
                expect={"text": "HI", "length": 2},
                invalid_arguments=b'{"text": 1}',
                large_arguments=b'{"text": "abcd", "repeat": 400000}',
            )
        ),
        id="proto-only-shout",
    ),
]


@pytest.fixture(scope="module", params=CASES)
def checked(request: pytest.FixtureRequest) -> tuple[Case, Report]:
    case: Case = request.param
    for requirement in case.requires:
        requirement()
    return case, asyncio.run(run_checks(case.target))


@pytest.mark.parametrize("check", CHECKS)
def test_worker_passes(checked: tuple[Case, Report], check: str) -> None:
    case, report = checked
    result = report[check]
    if check in case.skipped:
        assert result.status == SKIP, f"{check} was expected to be skipped: {result}"
        return
    assert result.status == PASS, f"{check}: {result.detail}\nworker output:\n{report.output[-3000:]}"
