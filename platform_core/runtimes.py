"""What a runtime is: how to start a worker of it, as data (an argv template and a few options).

Shared by the registry (its ``Runtime`` entries hold this; the built-in runtimes come from
here), the supervisor's backends (they build a worker's command line from the ``RuntimeSpec``
that comes with each allocation, so a supervisor needs no database) and the conformance kit
(``manage.py pppcheck``, which starts a worker exactly as a supervisor would). Imports nothing
of Django: supervisors and the kit run without it.

A command is a list of strings, each a ``str.format`` template over ``PLACEHOLDERS``:
``["node", "{root}/plugin_workers/node/bin/ppp-worker.js", "{entrypoint}", "--unix", "{socket}"]``.
"""

from __future__ import annotations

import os
import shutil
import string
import sys
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The platform's directory on this host ({root}).
ROOT = Path(__file__).resolve().parents[1]

PLACEHOLDERS: dict[str, str] = {
    "socket": "path of the Unix socket the worker listens on (required)",
    "entrypoint": "the plugin's entrypoint in the registry",
    "concurrency": "invocations one worker serves at once (the pool's max_concurrency, else 1)",
    "memory_mb": "the plugin's memory limit in MiB",
    "heap_mb": "half the memory limit in MiB, at least 32 (e.g. a JVM's -Xmx{heap_mb}m)",
    "root": "the platform's directory on the supervisor's host",
    "python": "the supervisor's Python interpreter",
}
# Resolved once per host, not per worker: what a working directory and environment values may use.
HOST_PLACEHOLDERS = frozenset({"root", "python"})
# A container sees neither the host's directory nor its interpreter.
CONTAINER_PLACEHOLDERS = frozenset(PLACEHOLDERS) - HOST_PLACEHOLDERS
# Where a container's socket is (the docker backend bind-mounts the worker's directory there).
CONTAINER_SOCKET = "/sock/worker.sock"


class RuntimeSpecError(ValueError):
    """A runtime's recipe cannot work (unknown placeholder, no {socket}, empty command...)."""


@dataclass(frozen=True)
class RuntimeSpec:
    """How to start a worker of one runtime (carried in ``PluginRef.runtime_spec``)."""

    name: str
    # argv template of a worker on the process backend.
    command: tuple[str, ...]
    # Working directory of the worker (may use {root}); "" means {root}.
    workdir: str = "{root}"
    # Environment added to the scrubbed one every worker gets (values may use {root}, {python}).
    env: tuple[tuple[str, str], ...] = ()
    # Default image on the docker backend (a plugin's own image wins).
    image: str = ""
    # Arguments of the container (after the image's ENTRYPOINT); empty: not runnable on docker.
    container_command: tuple[str, ...] = ()
    # False for runtimes that reserve large address ranges (the JVM, V8): no RLIMIT_AS, the
    # runtime's own heap limit from {heap_mb} instead.
    limit_address_space: bool = True
    # Fork workers from a template process started with this command (the Python SDK's zygote);
    # the forked worker runs ``zygote_args``. Empty: spawn every worker.
    zygote_command: tuple[str, ...] = ()
    zygote_args: tuple[str, ...] = ()

    @classmethod
    def create(
        cls,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        container_command: Sequence[str] = (),
        zygote_command: Sequence[str] = (),
        zygote_args: Sequence[str] = (),
        **options: object,
    ) -> RuntimeSpec:
        """A spec from lists and dicts (JSON), normalised to hashable tuples."""
        pairs = env.items() if isinstance(env, Mapping) else env
        return cls(
            name=name,
            command=tuple(command),
            env=tuple(sorted((str(k), str(v)) for k, v in pairs)),
            container_command=tuple(container_command),
            zygote_command=tuple(zygote_command),
            zygote_args=tuple(zygote_args),
            **options,  # type: ignore[arg-type]
        )

    def as_json(self) -> dict[str, object]:
        """The recipe as JSON-able lists and objects, name excluded (the Runtime model's fields)."""
        return {
            "command": list(self.command),
            "workdir": self.workdir,
            "env": dict(self.env),
            "image": self.image,
            "container_command": list(self.container_command),
            "limit_address_space": self.limit_address_space,
            "zygote_command": list(self.zygote_command),
            "zygote_args": list(self.zygote_args),
        }

    def errors(self) -> list[str]:
        """What makes this recipe unusable, for people ([] when it is fine)."""
        problems = template_errors(self.command, "command")
        if self.container_command:
            problems += template_errors(self.container_command, "container command", allowed=CONTAINER_PLACEHOLDERS)
        if bool(self.zygote_command) != bool(self.zygote_args):
            problems.append("a zygote needs both its command and the arguments of a forked worker")
        elif self.zygote_command:
            problems += template_errors(
                self.zygote_command, "zygote command", allowed=HOST_PLACEHOLDERS, need_socket=False
            )
            problems += template_errors(self.zygote_args, "zygote arguments")
        problems += template_errors([self.workdir], "working directory", allowed=HOST_PLACEHOLDERS, need_socket=False)
        for key, value in self.env:
            if not key or "=" in key:
                problems.append(f"environment variable name {key!r} is not valid")
            problems += template_errors([value], f"environment {key}", allowed=HOST_PLACEHOLDERS, need_socket=False)
        return problems

    def host_values(self) -> dict[str, str]:
        """{root} and {python} on this host."""
        return {"root": str(ROOT), "python": sys.executable}

    def resolved_workdir(self) -> str:
        return (self.workdir or "{root}").format(**self.host_values())

    def resolved_env(self) -> dict[str, str]:
        values = self.host_values()
        return {key: value.format(**values) for key, value in self.env}


def template_errors(
    template: Sequence[str],
    what: str,
    *,
    allowed: frozenset[str] | set[str] = frozenset(PLACEHOLDERS),
    need_socket: bool = True,
) -> list[str]:
    """Problems of an argv template: empty, unknown placeholders, bad braces, no {socket}."""
    if need_socket and not template:
        return [f"the {what} is empty"]
    problems: list[str] = []
    used: set[str] = set()
    for part in template:
        if not isinstance(part, str):
            problems.append(f"the {what} must be a list of strings, not {part!r}")
            continue
        try:
            fields = [field for _, field, spec, conversion in string.Formatter().parse(part) if field is not None]
        except ValueError as exc:
            problems.append(f"the {what} has a malformed placeholder in {part!r} ({exc}; write {{{{ for a brace)")
            continue
        for field in fields:
            if field not in allowed:
                known = ", ".join("{" + name + "}" for name in sorted(allowed))
                problems.append(f"the {what} uses unknown placeholder {{{field}}} in {part!r} (known: {known})")
            used.add(field)
    if need_socket and "socket" not in used and not problems:
        problems.append(
            f"the {what} must say where the worker listens: put {{socket}} where the socket path goes "
            "(e.g. ... --unix {socket})"
        )
    return problems


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """The argv of ``template`` with every placeholder replaced."""
    return [part.format(**values) for part in template]


def worker_values(*, socket: str, entrypoint: str, concurrency: int, memory_bytes: int) -> dict[str, str]:
    """The per-worker placeholders (socket, entrypoint, concurrency, memory_mb, heap_mb).

    A worker's id is in its environment (PPP_WORKER_ID), not a placeholder: the command is
    built before the supervisor names the socket's directory after it."""
    memory_mb = memory_bytes // (1024 * 1024)
    return {
        "socket": socket,
        "entrypoint": entrypoint,
        "concurrency": str(concurrency),
        "memory_mb": str(memory_mb),
        "heap_mb": str(max(memory_mb // 2, 32)),
    }


def worker_id_base(runtime: str) -> int:
    """Where a runtime's worker ids start (its first worker is base + 1).

    The seed's ranges for its two runtimes (worker-10001 is Java, worker-20001 Python); any
    other runtime gets a range of 10,000 derived from its name (30000 ... 999999), the same on
    every host and without a table to keep. Two runtimes may share a range: ids only need to be
    unique within one supervisor, and a worker is always shown with its runtime.
    """
    seed = {"java": 10000, "python": 20000}
    if runtime in seed:
        return seed[runtime]
    return 10000 * (3 + zlib.crc32(runtime.encode()) % 97)


def unavailable(spec: RuntimeSpec) -> str | None:
    """Why this host cannot start workers of ``spec`` (its program or a file under {root} is
    missing), or None when it can. Checks what can be checked without starting anything."""
    values = {**spec.host_values(), **dict.fromkeys(CONTAINER_PLACEHOLDERS, "")}
    try:
        argv = render(spec.command, values)
    except (KeyError, IndexError, ValueError) as exc:
        return f"its command is not a valid template ({exc})"
    if not argv or not argv[0]:
        return "it has no command"
    path = os.environ.get("PATH", "/usr/bin:/bin")
    if shutil.which(argv[0], path=path) is None:
        return f"{argv[0]!r} is not installed (not found on PATH)"
    for part in argv[1:]:
        # A file of the platform the command names (a jar, a script) must have been built.
        if part.startswith(str(ROOT) + os.sep) and not os.path.exists(part):
            return f"{os.path.relpath(part, ROOT)} is missing (build it: `make`)"
    workdir = spec.resolved_workdir()
    if not os.path.isdir(workdir):
        return f"its working directory {workdir} does not exist"
    return None


_PYTHON_ARGS = ("{entrypoint}", "--unix", "{socket}", "--max-concurrency", "{concurrency}")

# Stem cells (platform_core/supervisor/stemcells.py): a worker program that knows ``--stem``
# starts with no plugin and waits on a control socket ({control}) for the one it will serve.
# Its command is the runtime's, with the worker's arguments (the tail below) replaced.
_JAVA_ARGS = ("--service", "{entrypoint}", "--unix", "{socket}")
_STEM_ARGS = ("--stem", "{control}", "--unix", "{socket}")
# Runtime → the worker arguments its SDK's stem mode replaces (the Node SDK has none yet).
STEM_TAILS: dict[str, tuple[str, ...]] = {"python": _PYTHON_ARGS, "java": _JAVA_ARGS}


def stem_command(runtime: str, template: Sequence[str]) -> list[str] | None:
    """The stem-cell form of a worker command (process or container) of ``runtime``, or None
    when its program cannot start as one (not a platform SDK's arguments)."""
    tail = STEM_TAILS.get(runtime)
    if tail is None or len(template) < len(tail) or tuple(template[len(template) - len(tail) :]) != tail:
        return None
    return [*template[: len(template) - len(tail)], *_STEM_ARGS]


# The platform's own runtimes. The registry's migration creates them from here (and
# `manage.py loadplugins` re-creates missing ones); after that, the registry is what counts.
BUILTIN_RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec.create(
            "python",
            ("{python}", "-s", "-m", "ppp_sdk", *_PYTHON_ARGS),
            workdir="{root}/plugin_workers/python",
            env={
                "PYTHONPATH": "{root}/plugin_workers/python",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONUNBUFFERED": "1",
                # glibc gives every thread its own 64 MiB malloc arena, which eats an address-space limit.
                "MALLOC_ARENA_MAX": "2",
            },
            image="python-plugin-worker:latest",
            container_command=_PYTHON_ARGS,
            zygote_command=("{python}", "-s", "-m", "ppp_sdk.zygote"),
            zygote_args=_PYTHON_ARGS,
        ),
        RuntimeSpec.create(
            "java",
            (
                "java",
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-XX:-UsePerfData",
                "-Xss512k",
                "-Xmx{heap_mb}m",
                "-XX:MaxMetaspaceSize=64m",
                "-jar",
                "{root}/plugin_workers/java/build/ppp-java-worker.jar",
                *_JAVA_ARGS,
            ),
            image="java-plugin-worker:latest",
            container_command=_JAVA_ARGS,
            # The JVM reserves large address ranges: its heap limit is -Xmx instead.
            limit_address_space=False,
        ),
        RuntimeSpec.create(
            "node",
            (
                "node",
                "--max-old-space-size={heap_mb}",
                "{root}/plugin_workers/node/bin/ppp-worker.js",
                "{entrypoint}",
                "--unix",
                "{socket}",
                "--max-concurrency",
                "{concurrency}",
            ),
            workdir="{root}/plugin_workers/node",
            image="node-plugin-worker:latest",
            container_command=("{entrypoint}", "--unix", "{socket}", "--max-concurrency", "{concurrency}"),
            # V8 reserves gigabytes of address space up front: its heap limit is --max-old-space-size.
            limit_address_space=False,
        ),
    )
}
