"""``manage.py buildimages``: build the container images of the registered plugins (docker backend).

Every distinct ``image`` of the enabled plugins in the registry is built from its runtime's
worker directory (python, java, node → plugin_workers/RUNTIME; other runtimes bring their own image). Our machines
have no registry, so by default the images are built on the local base images, which
``scripts/build-base-images.sh`` makes with debootstrap when they are missing;
``--base-image RUNTIME=IMAGE`` builds on another base instead (e.g. ``python=python:3.12-slim``
where a registry is reachable). Builds use the engine's legacy builder (the only one here)
with no network for RUN steps, and remove intermediate containers even when a step fails.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platform_core.supervisor.backends.docker import DockerUnavailable, connect

if TYPE_CHECKING:
    from docker import DockerClient

REPO = Path(settings.BASE_DIR)
CONTEXTS = {
    "python": REPO / "plugin_workers" / "python",
    "java": REPO / "plugin_workers" / "java",
    "node": REPO / "plugin_workers" / "node",
}
LOCAL_BASES = {
    "python": "plugin-platform/python-base:local",
    "java": "plugin-platform/java-base:local",
    "node": "plugin-platform/node-base:local",
}
JAVA_JAR = CONTEXTS["java"] / "build" / "ppp-java-worker.jar"


def requirement_pin(name: str) -> str:
    """The version pinned as ``name==VERSION`` in requirements.txt (host and images must agree)."""
    for line in (REPO / "requirements.txt").read_text().splitlines():
        package, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep and package.strip().lower() == name:
            return version.strip()
    raise CommandError(f"no {name}==VERSION pin in requirements.txt")


class Command(BaseCommand):
    help = "Build the worker images of the enabled plugins in the registry (for the docker backend)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--runtime", action="append", choices=sorted(CONTEXTS), help="only this runtime's images (repeatable)"
        )
        parser.add_argument(
            "--base-image",
            action="append",
            default=[],
            metavar="RUNTIME=IMAGE",
            help="build RUNTIME's images on IMAGE instead of the local base (repeatable)",
        )
        parser.add_argument("--no-cache", action="store_true", help="rebuild every layer")

    def handle(
        self, *args: Any, runtime: list[str] | None, base_image: list[str], no_cache: bool, **options: Any
    ) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        bases = dict(LOCAL_BASES)
        for item in base_image:
            name, sep, image = item.partition("=")
            if not sep or name not in CONTEXTS or not image:
                raise CommandError(
                    f"--base-image {item!r}: expected RUNTIME=IMAGE with RUNTIME one of {sorted(CONTEXTS)}"
                )
            bases[name] = image
        wanted = self._registry_images(set(runtime or CONTEXTS))
        if not wanted:
            self.stdout.write("no enabled plugin needs an image: nothing to build")
            return
        try:
            client = connect()
        except DockerUnavailable as exc:
            raise CommandError(str(exc)) from exc
        started = time.monotonic()
        for name in sorted(wanted):
            self._prepare(name)
            if bases[name] == LOCAL_BASES[name]:
                self._ensure_local_base(client, name)
            self._build(client, name, sorted(wanted[name]), bases[name], no_cache=no_cache)
        self.stdout.write(self.style.SUCCESS(f"worker images built in {time.monotonic() - started:.1f} s"))

    def _registry_images(self, runtimes: set[str]) -> dict[str, set[str]]:
        from platform_core.registry.models import PluginSpec

        wanted: dict[str, set[str]] = defaultdict(set)
        rows = PluginSpec.objects.filter(enabled=True).values_list("runtime__name", "image", "runtime__image")
        for plugin_runtime, image, runtime_image in rows:
            # Other runtimes (added with `manage.py runtime add --image`) bring images of their own.
            if plugin_runtime in runtimes and plugin_runtime in CONTEXTS and (image or runtime_image):
                wanted[plugin_runtime].add(image or runtime_image)
        return wanted

    def _run(self, command: list[str]) -> None:
        self.stdout.write(f"running {' '.join(_relative(part) for part in command)}")
        self.stdout.flush()
        if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
            raise CommandError(f"{command[0]} failed")

    def _prepare(self, runtime: str) -> None:
        """What a worker image is built from: the generated PPP code, the Java jar, the Node packages."""
        if runtime == "python" and not (CONTEXTS["python"] / "ppp_sdk" / "_gen").is_dir():
            self._run([sys.executable, "-m", "platform_core.codegen"])
        if runtime == "java":
            self._run([str(CONTEXTS["java"] / "build.sh")])  # a no-op when the jar is up to date
            if not JAVA_JAR.exists():
                raise CommandError(f"{JAVA_JAR.relative_to(REPO)} was not built")
        if runtime == "node":
            if not (CONTEXTS["node"] / "node_modules" / "@grpc" / "grpc-js").is_dir():
                raise CommandError("plugin_workers/node/node_modules is missing: run `make node`")
            # The SDK reads the proto at run time; the build context cannot reach protos/ itself.
            (CONTEXTS["node"] / "protos").mkdir(exist_ok=True)
            shutil.copy2(REPO / "protos" / "plugin_protocol.proto", CONTEXTS["node"] / "protos")

    def _ensure_local_base(self, client: DockerClient, runtime: str) -> None:
        from docker.errors import ImageNotFound

        try:
            client.images.get(LOCAL_BASES[runtime])
        except ImageNotFound:
            self.stdout.write(f"{LOCAL_BASES[runtime]} is missing: building it (about a minute)")
            self._run([str(REPO / "scripts" / "build-base-images.sh"), runtime])

    def _build(self, client: DockerClient, runtime: str, images: list[str], base: str, *, no_cache: bool) -> None:
        from docker.errors import APIError
        from docker.utils import parse_repository_tag

        buildargs = {"BASE_IMAGE": base}
        if runtime == "python":
            buildargs |= {"GRPCIO_VERSION": requirement_pin("grpcio"), "PROTOBUF_VERSION": requirement_pin("protobuf")}
        self.stdout.write(f"building {', '.join(images)} from {CONTEXTS[runtime].relative_to(REPO)} on {base}")
        self.stdout.flush()
        previous = self._image_id(client, images[0])
        started = time.monotonic()
        output: list[str] = []
        image_id = ""
        try:
            # The SDK's build is the engine's legacy builder (no BuildKit here); network "none"
            # only concerns RUN steps (our local bases need none; the FROM image is the engine's).
            for message in client.api.build(
                path=str(CONTEXTS[runtime]),
                tag=images[0],
                buildargs=buildargs,
                network_mode="none" if base == LOCAL_BASES[runtime] else None,
                rm=True,
                forcerm=True,
                nocache=no_cache,
                decode=True,
            ):
                if text := message.get("stream", ""):
                    output.append(text)
                    if self.verbosity >= 2:  # the builder's own output
                        self.stdout.write(text, ending="")
                if "error" in message:
                    tail = "".join(output[-20:])
                    raise CommandError(f"building {images[0]} failed: {message['error'].strip()}\n{tail}")
                image_id = message.get("aux", {}).get("ID", image_id)
        except APIError as exc:
            raise CommandError(f"building {images[0]} failed: {exc.explanation or exc}") from exc
        for image in images[1:]:
            repository, tag = parse_repository_tag(image)
            client.api.tag(image_id or images[0], repository, tag or "latest")
        size = client.images.get(images[0]).attrs["Size"] / 1e6
        self.stdout.write(f"built {', '.join(images)} in {time.monotonic() - started:.1f} s ({size:.0f} MB)")
        if previous and previous != self._image_id(client, images[0]):
            # The image it replaces would stay behind untagged, a few hundred MB per rebuild.
            with contextlib.suppress(APIError):  # still used by a container, or tagged elsewhere
                client.api.remove_image(previous, noprune=False)

    @staticmethod
    def _image_id(client: DockerClient, image: str) -> str:
        from docker.errors import ImageNotFound

        try:
            return client.images.get(image).id or ""
        except ImageNotFound:
            return ""


def _relative(part: str) -> str:
    return str(Path(part).relative_to(REPO)) if part.startswith(f"{REPO}/") else part
