"""``manage.py runtime add|list|show|remove``: the registry's language runtimes.

    manage.py runtime add node \\
        --command 'node {root}/plugin_workers/node/bin/ppp-worker.js {entrypoint} --unix {socket}'
    manage.py runtime add go --command '/opt/go-worker/worker --unix {socket}' --image go-worker:1 \\
        --container-command '--unix {socket}' --env GOMAXPROCS=1

A command is split like a shell line (or given as a JSON list); its placeholders are listed by
``manage.py runtime add --help``. Check a worker command before adding it: ``manage.py pppcheck``.
"""

from __future__ import annotations

import json
import shlex

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platform_core.registry.models import Runtime
from platform_core.registry.services import RuntimeInUse, runtime_add, runtime_remove
from platform_core.runtimes import PLACEHOLDERS, unavailable


def argv(text: str, option: str) -> list[str]:
    """A command line: a JSON list of strings, or split like a shell would."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"{option}: not a JSON list ({exc})") from None
        if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
            raise CommandError(f"{option}: a JSON command must be a list of strings")
        return value
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None


def env_pairs(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CommandError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


class Command(BaseCommand):
    help = "Add, list, show or remove the language runtimes of the registry."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
        placeholders = "; ".join(f"{{{name}}}: {text}" for name, text in PLACEHOLDERS.items())
        add = actions.add_parser(
            "add",
            help="register a runtime (or change one with --replace)",
            description=f"Register a runtime. Placeholders in commands: {placeholders}.",
            called_from_command_line=getattr(parser, "called_from_command_line", None),
        )
        add.add_argument("name", help="e.g. node (lower-case letters, digits and _)")
        add.add_argument(
            "--command", required=True, help="a worker's command on the process backend; must contain {socket}"
        )
        add.add_argument("--image", default="", help="default container image (docker backend)")
        add.add_argument(
            "--container-command", default="", help="arguments after the image's ENTRYPOINT (docker backend)"
        )
        add.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="worker environment")
        add.add_argument("--workdir", default="{root}", help="working directory of a worker (default {root})")
        add.add_argument(
            "--no-address-space-limit",
            action="store_true",
            help="for runtimes that reserve large address ranges (JVM, V8): limit their heap with {heap_mb} instead",
        )
        add.add_argument("--description", default="")
        add.add_argument("--replace", action="store_true", help="change the recipe of an existing runtime")
        actions.add_parser("list", help="list the runtimes", called_from_command_line=None)
        show = actions.add_parser("show", help="a runtime's recipe as JSON", called_from_command_line=None)
        show.add_argument("name")
        remove = actions.add_parser("remove", help="remove a runtime no plugin uses", called_from_command_line=None)
        remove.add_argument("name")

    def handle(self, *args: object, action: str, **options: object) -> None:
        getattr(self, f"_{action}")(**options)

    def _add(self, *, name: str, command: str, image: str, container_command: str, env: list[str], **options) -> None:
        try:
            runtime, created = runtime_add(
                name=name,
                command=argv(command, "--command"),
                image=image,
                container_command=argv(container_command, "--container-command") if container_command else [],
                env=env_pairs(env),
                workdir=options["workdir"],
                limit_address_space=not options["no_address_space_limit"],
                description=options["description"],
                replace=options["replace"],
            )
        except ValidationError as exc:
            raise CommandError(f"runtime {name!r}: {'; '.join(exc.messages)}") from None
        self.stdout.write(f"runtime {runtime.name} {'added' if created else 'replaced'}: {shlex.join(runtime.command)}")
        if (missing := unavailable(runtime.spec())) is not None:
            self.stderr.write(f"note: this host cannot run it yet: {missing}")
        self.stdout.write(
            f"next: add plugins with runtime {runtime.name} (admin), and run its supervisor "
            f"(SUPERVISORS={runtime.name}=127.0.0.1:PORT, `manage.py runsupervisor --runtime {runtime.name}`)"
        )

    def _list(self, **options: object) -> None:
        for runtime in Runtime.objects.order_by("name"):
            plugins = runtime.plugins.count()
            status = unavailable(runtime.spec()) or "runnable here"
            self.stdout.write(f"{runtime.name:<12} {plugins:>3} plugin(s)  {shlex.join(runtime.command)}  [{status}]")

    def _show(self, *, name: str, **options: object) -> None:
        runtime = self._get(name)
        from platform_core.registry.builtin import runtime_fields

        self.stdout.write(json.dumps({"name": runtime.name, **runtime_fields(runtime.spec())}, indent=2))

    def _remove(self, *, name: str, **options: object) -> None:
        try:
            runtime_remove(name=name)
        except Runtime.DoesNotExist:
            raise CommandError(f"no runtime {name!r}") from None
        except RuntimeInUse as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"runtime {name} removed")

    @staticmethod
    def _get(name: str) -> Runtime:
        runtime = Runtime.objects.filter(name=name).first()
        if runtime is None:
            raise CommandError(f"no runtime {name!r} (manage.py runtime list)")
        return runtime
