"""``manage.py pppcheck -- COMMAND…``: check a worker against the PPP, as a supervisor would run it.

    manage.py pppcheck --arguments '{"limit": 1000}' -- node plugin_workers/node/bin/ppp-worker.js \\
        plugins/count_primes --unix {socket}
    manage.py pppcheck --runtime node --entrypoint plugins/count_primes --arguments '{"limit": 1000}'

COMMAND is an argv template, the same that ``manage.py runtime add --command`` takes: ``{socket}``
marks where the socket path goes (the kit appends nothing), ``{entrypoint}``, ``{concurrency}``,
``{heap_mb}``... are filled in as a supervisor fills them. ``--runtime`` checks a registered
runtime's own recipe instead. Prints each check and a summary; exits 1 if any check failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from platform_core.registry.management.commands.runtime import argv, env_pairs
from platform_core.runtimes import RuntimeSpec
from platform_core.supervisor.conformance import CHECKS, FAIL, PASS, CheckResult, Target, run_checks

MARKS = {PASS: "PASS", FAIL: "FAIL", "skip": "SKIP"}


def _json_bytes(text: str | None, option: str) -> bytes | None:
    if text is None:
        return None
    try:
        json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{option}: not JSON ({exc})") from None
    return text.encode()


class Command(BaseCommand):
    help = "Check a plugin worker against the Platform-Plugin Protocol (PPP), started as a supervisor would."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("command", nargs="*", help="the worker's argv template (after --), with {socket}")
        parser.add_argument("--runtime", help="check a registered runtime's command instead of COMMAND")
        parser.add_argument("--entrypoint", default="", help="what {entrypoint} stands for")
        parser.add_argument("--primitive", default="", help="the primitive to invoke (default: the first listed)")
        parser.add_argument("--arguments", default="{}", help="JSON arguments the primitive accepts (default {})")
        parser.add_argument("--expect", help="JSON object the output must contain (keys and values)")
        parser.add_argument("--invalid-arguments", help="JSON arguments the primitive must refuse as invalid_input")
        parser.add_argument("--large-arguments", help="JSON arguments that make a result over 1 MiB (chunking)")
        parser.add_argument("--no-progress", action="store_true", help="the primitive reports no progress")
        parser.add_argument("--concurrency", type=int, default=4, help="invocations at once (and {concurrency})")
        parser.add_argument("--memory-mb", type=int, default=256, help="the memory limit (and {memory_mb})")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds an invocation may take")
        parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="worker environment")
        parser.add_argument("--workdir", help="working directory of the worker (default: the current one)")
        parser.add_argument(
            "--no-address-space-limit", action="store_true", help="no RLIMIT_AS (runtimes such as the JVM or V8)"
        )
        parser.add_argument(
            "--no-orphan-check", action="store_true", help="skip the check that the worker dies with its supervisor"
        )

    def handle(self, *args: Any, command: list[str], runtime: str | None, **options: Any) -> None:
        spec = self._spec(command, runtime, options)
        expect = None
        if options["expect"] is not None:
            expect = json.loads(_json_bytes(options["expect"], "--expect") or b"null")
            if not isinstance(expect, dict):
                raise CommandError("--expect: give a JSON object (the keys the output must have, with their values)")
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        target = Target(
            spec=spec,
            entrypoint=options["entrypoint"],
            primitive=options["primitive"],
            arguments=_json_bytes(options["arguments"], "--arguments") or b"{}",
            expect=expect,
            invalid_arguments=_json_bytes(options["invalid_arguments"], "--invalid-arguments"),
            large_arguments=_json_bytes(options["large_arguments"], "--large-arguments"),
            progress=not options["no_progress"],
            concurrency=options["concurrency"],
            memory_mb=options["memory_mb"],
            timeout_s=options["timeout"],
            orphan_check=not options["no_orphan_check"],
        )
        self.stdout.write(f"pppcheck: {shlex.join(spec.command)}  (in {spec.resolved_workdir()})")
        width = max(map(len, CHECKS))

        def show(result: CheckResult) -> None:
            style = {PASS: self.style.SUCCESS, FAIL: self.style.ERROR}.get(result.status, self.style.WARNING)
            self.stdout.write(f"  {style(MARKS[result.status])}  {result.name:<{width}}  {result.detail}")
            self.stdout.flush()

        report = asyncio.run(run_checks(target, on_result=show))
        if not report.ok and report.output.strip():
            self.stdout.write("worker output (last 2000 characters):")
            self.stdout.write(report.output[-2000:].rstrip())
        self.stdout.write(f"pppcheck: {report.summary()}")
        if not report.ok:
            raise CommandError(f"the worker does not conform: {report.counts[FAIL]} check(s) failed", returncode=1)

    @staticmethod
    def _spec(command: list[str], runtime: str | None, options: dict[str, Any]) -> RuntimeSpec:
        if runtime and command:
            raise CommandError("give either --runtime NAME or a command after --, not both")
        if runtime:
            from platform_core.registry.models import Runtime

            entry = Runtime.objects.filter(name=runtime).first()
            if entry is None:
                raise CommandError(f"no runtime {runtime!r} in the registry (manage.py runtime list)")
            spec = entry.spec()
        elif command:
            if len(command) == 1:  # the whole command line quoted as one argument
                command = argv(command[0], "COMMAND")
            spec = RuntimeSpec.create(
                "pppcheck",
                command,
                env=env_pairs(options["env"]),
                workdir=options["workdir"] or os.getcwd(),
                limit_address_space=not options["no_address_space_limit"],
            )
        else:
            raise CommandError("give the worker's command after --, e.g. -- ./my-worker --unix {socket}")
        if problems := spec.errors():
            raise CommandError("; ".join(problems))
        if not options["entrypoint"] and any("{entrypoint}" in part for part in spec.command):
            raise CommandError("the command uses {entrypoint}: say what it stands for with --entrypoint")
        return spec
