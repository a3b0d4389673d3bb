"""CPU per call of the gateway's per-request steps (issue 13, item 5), in one process.

    python -m bench.percall [--calls N]

Each step of a warm invocation that is the gateway's own Python work is called N times in a
loop against a real (temporary) database and registry, and its CPU time per call (µs, thread
CPU time, median of five rounds) is printed: authentication of an API key (cached), tenant
admission (enter and leave), the registry lookup (cached), parsing the body and validating it
against the input schema, validating a result against the output schema, building the trace
of a warm invocation (the events it records, nobody watching) and its stored document, and
shaping the answer. The sum is the part of ``bench.hotpath``'s "gateway CPU per invocation"
that is not HTTP, gRPC or the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

# The kinds a warm pooled subtract records (one run of the platform, in order).
WARM_KINDS = (
    "request",
    "lookup",
    "lookup_result",
    "validate_input",
    "allocate_request",
    "lease_used",
    "init_cached",
    "invoke_request",
    "completed",
    "validate_output",
    "lease_returned",
    "response",
)


def _setup() -> tuple[Path, str]:
    directory = Path(tempfile.mkdtemp(prefix="ppc-", dir="/tmp"))
    os.environ.update(
        {
            "PLATFORM_VAR_DIR": str(directory),
            "SQLITE_PATH": str(directory / "db.sqlite3"),
            "DJANGO_SECRET_KEY": "bench",
            "LOG_LEVEL": "ERROR",
            "DJANGO_SETTINGS_MODULE": "platform_core.settings",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    call_command("loadplugins", verbosity=0)
    call_command("createapikey", "--tenant", "bench", "--name", "bench", "--output", str(directory / "key"))
    from platform_core.tenancy.models import Tenant

    # Admission measured, not refused: the bench's tenant has no practical rate limit.
    Tenant.objects.filter(slug="bench").update(rate_per_s=1_000_000, burst=1_000_000)
    return directory, (directory / "key").read_text().strip()


def _round(step: Callable[[], object], calls: int) -> float:
    started = time.thread_time_ns()
    for _ in range(calls):
        step()
    return (time.thread_time_ns() - started) / calls / 1000


async def _round_async(step: Callable[[], Awaitable[object]], calls: int) -> float:
    started = time.thread_time_ns()
    for _ in range(calls):
        await step()
    return (time.thread_time_ns() - started) / calls / 1000


async def measure(key: str, calls: int) -> dict[str, float]:
    from platform_core.gateway import auth, service
    from platform_core.gateway.execution import Outcome, arguments_parse
    from platform_core.invocations.trace import Trace
    from platform_core.invocations.vocabulary import EventKind
    from platform_core.registry.schemas import schema_errors
    from platform_core.registry.selectors import plugin_get
    from platform_core.tenancy.admission import admission

    authorization = f"Bearer {key}"
    caller = await auth.caller_async(authorization, "", ("", ""))
    assert caller is not None, "the bench's API key was not accepted"
    plugin = await plugin_get(name="subtract")
    assert plugin is not None
    body = b'{"operand1": 10, "operand2": 5}'
    output = b'{"result": 5.0}'
    kinds = [EventKind(k) for k in WARM_KINDS]

    async def authenticate() -> object:
        return await auth.caller_async(authorization, "", ("", ""))

    async def admit() -> None:
        ticket = await admission.enter(caller)
        ticket.leave()

    async def lookup() -> object:
        return await plugin_get(name="subtract")

    def validate_input() -> object:
        return schema_errors(plugin.input_validator, arguments_parse(body))

    def validate_output() -> object:
        return schema_errors(plugin.output_validator, json.loads(output))

    def trace() -> object:
        built = Trace("00000000-0000-4000-8000-000000000000", context={"tenant_id": "bench"})
        for kind in kinds:
            built.add(kind, f"{kind.value} detail")
        return json.dumps([event.stored() for event in built.events])

    outcome = Outcome("00000000-0000-4000-8000-000000000000", 200)
    outcome.result, outcome.worker_id, outcome.timings_ms = {"result": 5.0}, "w-1", {"total": 2.0}

    def shape() -> object:
        _, payload, _ = service.answer(outcome, style="calculate", name="subtract")
        return json.dumps(payload).encode()

    steps_async = {"authentication (cached key)": authenticate, "admission (enter + leave)": admit}
    steps_async["registry lookup (cached)"] = lookup
    steps = {
        "parse + validate input": validate_input,
        "validate output": validate_output,
        f"trace: {len(kinds)} events + stored document": trace,
        "answer (shape + JSON)": shape,
    }
    results: dict[str, float] = {}
    for name, step in steps_async.items():
        results[name] = statistics.median([await _round_async(step, calls) for _ in range(5)])
    for name, step in steps.items():
        results[name] = statistics.median([_round(step, calls) for _ in range(5)])
    return results


def render(results: dict[str, float], calls: int) -> str:
    lines = [
        f"CPU per call (µs, thread time, median of 5 rounds of {calls} calls):",
        "",
        "| step | µs per call |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {value:.1f} |" for name, value in results.items()]
    lines.append(f"| **sum** | **{sum(results.values()):.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    options = parser.parse_args(argv)
    directory, key = _setup()
    try:
        print(render(asyncio.run(measure(key, options.calls)), options.calls))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
