"""The ``docker`` backend: each worker is a locked-down container of its plugin's image.

Isolation on this backend: no network at all (``--network none``: PPP runs over a Unix socket
in a bind-mounted per-worker directory), a read-only root file system with a small ``/tmp``
tmpfs, every capability dropped, ``no-new-privileges``, an unprivileged user (nobody), memory
(without swap), CPU and pids limits from the registry, 1024 open files, no core dumps. Every
container carries labels naming its supervisor, worker and plugin, so that a supervisor that
restarts after a crash finds and removes what its earlier life left running.

Only supervisors import this module (and with it the ``docker`` SDK); the gateway never does.
The SDK is blocking: short calls (create, start, stop, remove) run on a small private thread
pool, and the two long waits of each worker (its exit, its log stream) on daemon threads of
their own, so that they can neither starve the pool nor hold up the supervisor's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit

from platform_core.runtimes import CONTAINER_SOCKET, RuntimeSpec, render, stem_command, worker_values
from platform_core.supervisor import exits
from platform_core.supervisor.backends import Emit, WorkerStartError, stem_bind
from platform_core.supervisor.model import ExitCause, PluginRef, State, Worker

log = logging.getLogger(__name__)

T = TypeVar("T")

# Where the worker's socket directory appears inside the container.
CONTAINER_SOCKET_DIR = "/sock"
SOCKET_NAME = "worker.sock"
# nobody:nogroup, present in both base images (plugin_workers/*/Dockerfile run as it too).
CONTAINER_UID = 65534
LABEL_SUPERVISOR = "plugin-platform.supervisor"
LABEL_WORKER = "plugin-platform.worker"
LABEL_PLUGIN = "plugin-platform.plugin"
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH_BYTES = 107
# How long a stopped or force-removed container may take to disappear from the engine.
REMOVAL_TIMEOUT_S = 10.0
# The exit code when the engine cannot tell it (the container was already gone, or the engine failed).
EXIT_UNKNOWN = -1
# Errors of an engine that is gone or misbehaving: requests' errors are not DockerExceptions.
ENGINE_ERRORS = (DockerException, requests.RequestException)
# How long a container's exit may precede the engine's OOM event in our event stream.
OOM_EVENT_WAIT_S = 0.5
# Containers killed by the memory cgroup's OOM killer that we still remember (most recent).
OOM_MEMORY = 1024


class DockerUnavailable(Exception):
    """No Docker Engine answers: a supervisor cannot offer the docker backend."""


def connect(*, max_pool_size: int = 10, timeout_s: int = 30) -> docker.DockerClient:
    """A client of the engine named by the environment (DOCKER_HOST, default /var/run/docker.sock)."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        # The client negotiates the API version with the engine (Debian's 20.10 speaks 1.41).
        client = docker.from_env(max_pool_size=max_pool_size, timeout=timeout_s)
        client.ping()
    except ENGINE_ERRORS as exc:
        raise DockerUnavailable(
            f"no Docker Engine answers at {where} ({exc}); start one with `scripts/docker-engine.sh ensure`, "
            "or run workers on the process backend"
        ) from exc
    return client


def _recipe(plugin: PluginRef) -> RuntimeSpec:
    spec = plugin.launch_spec
    if spec is None or not spec.container_command:
        raise WorkerStartError(
            f"the docker backend cannot run {plugin.runtime!r} workers: the runtime has no container command "
            "(`manage.py runtime add ... --container-command`)"
        )
    if problems := spec.errors():
        raise WorkerStartError(f"runtime {spec.name!r} cannot start workers: {'; '.join(problems)}")
    return spec


def worker_command(plugin: PluginRef, *, stem: bool = False) -> list[str]:
    """The container command (the runtime's container command; the image's ENTRYPOINT is its
    worker program); ``stem``: that of a stem cell, which waits on its control socket."""
    values = worker_values(
        socket=CONTAINER_SOCKET,
        entrypoint=plugin.entrypoint,
        concurrency=plugin.pool.max_concurrency if plugin.pool else 1,
        memory_bytes=plugin.limits.memory_bytes,
    )
    template = _recipe(plugin).container_command
    if stem:
        stem_template = stem_command(plugin.runtime, template)
        if stem_template is None:
            raise WorkerStartError(f"{plugin.runtime!r} workers cannot start as stem cells")
        values["control"] = f"{CONTAINER_SOCKET_DIR}/{stem_bind.CONTROL_NAME}"
        return render(stem_template, values)
    return render(template, values)


def worker_image(plugin: PluginRef) -> str:
    """The plugin's own image, else its runtime's."""
    image = plugin.image or _recipe(plugin).image
    if not image:
        raise WorkerStartError(f"plugin {plugin.name!r} names no image, nor does its runtime {plugin.runtime!r}")
    return image


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        *,
        supervisor_id: str,
        client: docker.DockerClient,
        socket_root: Path,
        api_threads: int = 8,
    ) -> None:
        self.supervisor_id = supervisor_id
        self.client = client
        # Not shared with the process backend: reaping one backend's directories never
        # touches the other's.
        self.socket_root = Path(socket_root) / f"{supervisor_id}.docker"
        self._executor = ThreadPoolExecutor(max_workers=api_threads, thread_name_prefix=f"docker-{supervisor_id}")
        # As root (the usual supervisor) the socket directory is handed to nobody, the
        # container's user. Without root it cannot be: the container then runs as the
        # supervisor's own uid, because a socket that nobody creates is private to nobody (the
        # worker SDK's umask is 077) and only root could connect to it. A world-writable
        # directory would not help with that, and would let any local user in.
        self._as_root = os.geteuid() == 0
        self.user = f"{CONTAINER_UID}:{CONTAINER_UID}" if self._as_root else f"{os.getuid()}:{os.getgid()}"
        # Ids of our containers the kernel's OOM killer hit (the engine's "oom" events): a 137
        # exit code alone cannot tell an OOM kill from `docker kill`, and with auto_remove the
        # container's State.OOMKilled is gone by the time its exit is known.
        self._oom_killed: dict[str, None] = {}
        self._oom_watch: threading.Thread | None = None

    @classmethod
    def from_settings(cls, *, supervisor_id: str, max_workers: int | None = None) -> DockerBackend:
        """The backend as configured by Django settings; ``DockerUnavailable`` without an engine."""
        from django.conf import settings

        max_workers = max_workers or settings.PLATFORM_SUPERVISOR_MAX_WORKERS
        # Every live worker holds two engine connections (its exit wait and its log stream);
        # a pool smaller than that makes urllib3 discard connections with a warning each time.
        client = connect(max_pool_size=2 * max_workers + 8)
        return cls(supervisor_id=supervisor_id, client=client, socket_root=Path(settings.PLATFORM_SOCKET_ROOT))

    # --- start ----------------------------------------------------------------------------

    def can_start_stem_cells(self, spec: RuntimeSpec) -> bool:
        return bool(spec.container_command) and stem_command(spec.name, spec.container_command) is not None

    async def start_stem(self, worker: Worker, emit: Emit) -> Path:
        """Start a container whose worker program waits, with no plugin, to be bound; the host
        path of its control socket. It runs with the least CPU weight until it is bound."""
        await self.start(worker, emit, stem=True)
        directory: Path = worker.runtime_state["directory"]
        return directory / stem_bind.CONTROL_NAME

    async def bind(self, worker: Worker, plugin: PluginRef) -> None:
        """``docker update`` to the plugin's CPUs and pids limit (its memory is the stem cell's
        class), its CPU-seconds rlimit from now on, then the plugin loaded by the worker."""
        container = await self._launched(worker)
        if container is None:
            raise WorkerStartError("the stem cell's container is gone")
        limits = plugin.limits
        resources: dict[str, Any] = {"CpuShares": 1024, "NanoCpus": int(limits.cpus * 1e9) if limits.cpus else 0}
        if limits.pids:
            resources["PidsLimit"] = limits.pids
        try:
            await self._call(self._update, container.id, resources)
        except ENGINE_ERRORS as exc:
            raise WorkerStartError(f"docker update {container.short_id}: {_explain(exc)}") from exc
        if limits.cpu_seconds and worker.pid:
            from platform_core.supervisor.backends.process import _cpu_seconds, _descendants, _lower_rlimits

            for pid in [worker.pid, *_descendants(worker.pid)]:
                with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                    soft = math.ceil(_cpu_seconds(pid)) + limits.cpu_seconds
                    # As at create: SIGXCPU at the soft limit (exit 152, named), SIGKILL one second later.
                    await _lower_rlimits(pid, {"cpu": (soft, soft + 1)})
        await stem_bind.bind(worker.runtime_state["directory"] / stem_bind.CONTROL_NAME, plugin)

    def _update(self, container_id: str, resources: dict[str, Any]) -> None:
        """``docker update`` with what the SDK's update_container lacks (NanoCpus, PidsLimit)."""
        api: Any = self.client.api  # the SDK's own request helpers (docker-py has no public call for these fields)
        response = api._post_json(api._url("/containers/{0}/update", container_id), data=resources)
        api._raise_for_status(response)

    async def start(self, worker: Worker, emit: Emit, *, stem: bool = False) -> Path:
        self._watch_ooms()
        plugin = worker.plugin
        if not plugin.entrypoint and not stem:
            raise WorkerStartError(f"plugin {plugin.name!r} has no entrypoint")
        command = worker_command(plugin, stem=stem)
        image = worker_image(plugin)
        directory = self._make_directory(worker.worker_id)
        worker.runtime_state["directory"] = directory
        socket = directory / SOCKET_NAME
        worker.address = f"unix://{socket}"
        limits = plugin.limits
        emit(
            worker,
            State.SPAWNING,
            f"docker run --network none --read-only --user {self.user} --memory {limits.memory_bytes >> 20}m "
            f"--cpus {limits.cpus:g} --pids-limit {limits.pids} -v {directory}:{CONTAINER_SOCKET_DIR} "
            f"{image} {' '.join(command)}",
        )
        # A task of its own, shielded: if the caller gives up mid-launch, the launch still
        # completes and kill() finds (and removes) the container instead of leaking it.
        launch = asyncio.create_task(self._launch(worker, image, command, directory))
        worker.runtime_state["launch"] = launch
        container = await asyncio.shield(launch)
        emit(worker, State.STARTING, f"container {container.short_id} started, pid {worker.pid or 'unknown'}")
        return socket

    def _make_directory(self, worker_id: str) -> Path:
        self.socket_root.mkdir(parents=True, exist_ok=True, mode=0o711)
        directory = Path(tempfile.mkdtemp(prefix=f"{worker_id}-", dir=self.socket_root))  # mode 0700
        if len(str(directory / SOCKET_NAME).encode()) > MAX_SOCKET_PATH_BYTES:
            shutil.rmtree(directory, ignore_errors=True)
            raise WorkerStartError(
                f"socket path {directory / SOCKET_NAME} is longer than {MAX_SOCKET_PATH_BYTES} bytes: "
                "shorten SUPERVISOR_SOCKET_ROOT"
            )
        if self._as_root:
            os.chown(directory, CONTAINER_UID, CONTAINER_UID)  # the worker creates its socket here
        return directory

    def _run_options(self, worker: Worker, directory: Path) -> dict[str, Any]:
        limits = worker.plugin.limits
        ulimits = [Ulimit(name="nofile", soft=1024, hard=1024), Ulimit(name="core", soft=0, hard=0)]
        if limits.cpu_seconds:
            # A hard limit above the soft one: at the soft limit the kernel sends SIGXCPU (exit
            # 152, named as the CPU time limit), where an equal hard limit would SIGKILL (137).
            ulimits.append(Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1))
        options: dict[str, Any] = {
            "name": f"{self.supervisor_id}-{worker.worker_id}",
            "network_mode": "none",
            "read_only": True,
            "tmpfs": {"/tmp": "size=16m,mode=1777"},
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
            "user": self.user,
            "ulimits": ulimits,
            # The engine removes the container once it exits, whoever stops it; the exit code
            # is not lost to that, because _wait_removed waits from before the start.
            "auto_remove": True,
            # Both worker programs handle SIGTERM as PID 1 (the Python SDK and the JVM's
            # shutdown hooks), so no init process is needed for a quick `docker stop`.
            "init": False,
            "volumes": {str(directory): {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"}},
            "labels": {
                LABEL_SUPERVISOR: self.supervisor_id,
                LABEL_WORKER: worker.worker_id,
                LABEL_PLUGIN: worker.plugin.name or "(stem cell)",
            },
            # Nothing of the supervisor's environment (secrets included) goes in. No
            # PPP_PARENT_PID: the supervisor is not in the container's pid namespace (the SDK
            # would exit at once); reap_orphans() does the job of "die with the parent".
            "environment": {"PPP_WORKER_ID": worker.worker_id, "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"},
            # Bounded on disk too: a plugin that floods stdout must not fill the engine's disk.
            "log_config": LogConfig(type="json-file", config={"max-size": "8m", "max-file": "1"}),
        }
        if limits.memory_bytes:
            options["mem_limit"] = limits.memory_bytes
            options["memswap_limit"] = limits.memory_bytes  # the same value: no swap on top
        if limits.cpus:
            options["nano_cpus"] = int(limits.cpus * 1e9)
        if worker.stem_cell:
            # The least CPU weight while it starts (docker update gives it the default at binding):
            # a stem cell's start must not slow the invocations running meanwhile.
            options["cpu_shares"] = 2
        if limits.pids:
            options["pids_limit"] = limits.pids
        return options

    async def _launch(self, worker: Worker, image: str, command: list[str], directory: Path) -> Container:
        try:
            # create() never pulls (run() would try a registry when the image is missing).
            container: Container = await self._call(
                self.client.containers.create, image, command, **self._run_options(worker, directory)
            )
        except ImageNotFound as exc:
            raise WorkerStartError(
                f"image {image!r} not found: build the worker images with `manage.py buildimages` (`make images`)"
            ) from exc
        except ENGINE_ERRORS as exc:
            raise WorkerStartError(f"docker create {image}: {_explain(exc)}") from exc
        worker.runtime_state["container"] = container
        # Waiting for "removed" from before the start (as `docker run --rm` does) is the only
        # way to be sure to get the exit code of an auto-removed container.
        worker.runtime_state["exit"] = self._in_thread(
            self._wait_removed, container.id, name=f"docker-wait-{worker.worker_id}"
        )
        try:
            worker.pid = await self._call(self._start_container, container)
        except ENGINE_ERRORS as exc:
            # A container that never started is not auto-removed; kill() removes it.
            raise WorkerStartError(f"docker start {container.short_id} ({image}): {_explain(exc)}") from exc
        loop = asyncio.get_running_loop()
        worker.runtime_state["logs"] = self._in_thread(
            self._stream_logs,
            container.id,
            functools.partial(_call_soon, loop, worker.output.feed),
            name=f"docker-logs-{worker.worker_id}",
        )
        return container

    @staticmethod
    def _start_container(container: Container) -> int:
        """Start; the container's main pid on the host (0 if it is already gone)."""
        container.start()
        with contextlib.suppress(NotFound):
            container.reload()
            return int(container.attrs["State"].get("Pid") or 0)
        return 0

    def _wait_removed(self, container_id: str) -> int:
        try:
            result = self.client.api.wait(container_id, condition="removed")
        except NotFound:  # removed before we started waiting
            return EXIT_UNKNOWN
        except ENGINE_ERRORS as exc:
            log.warning("waiting for container %s failed: %s", container_id[:12], _explain(exc))
            return EXIT_UNKNOWN
        return int(result.get("StatusCode", EXIT_UNKNOWN))

    def _stream_logs(self, container_id: str, feed: Callable[[bytes], None]) -> None:
        """Copy the container's stdout and stderr into the worker's output until it stops."""
        try:
            for chunk in self.client.api.logs(container_id, stdout=True, stderr=True, stream=True, follow=True):
                feed(chunk)
        except NotFound:  # gone before we attached: nothing left to read
            pass
        except ENGINE_ERRORS as exc:
            log.debug("log stream of container %s ended: %s", container_id[:12], _explain(exc))

    # --- exit, stop, kill -----------------------------------------------------------------

    def exit_code(self, worker: Worker) -> int | None:
        waiter: asyncio.Future[int] | None = worker.runtime_state.get("exit")
        if waiter is None or not waiter.done():
            return None
        return EXIT_UNKNOWN if waiter.cancelled() or waiter.exception() else waiter.result()

    async def wait(self, worker: Worker) -> int:
        await self._launched(worker)
        waiter: asyncio.Future[int] | None = worker.runtime_state.get("exit")
        if waiter is None:  # never created
            return EXIT_UNKNOWN
        return await asyncio.shield(waiter)

    async def stop(self, worker: Worker, *, grace_s: float) -> int:
        container = await self._launched(worker)
        if container is not None and self.exit_code(worker) is None:
            try:
                # The engine sends SIGTERM, then SIGKILL after the grace period (whole seconds).
                await self._call(self.client.api.stop, container.id, timeout=max(0, math.ceil(grace_s)))
            except NotFound:  # exited and auto-removed meanwhile
                pass
            except ENGINE_ERRORS as exc:
                log.warning("docker stop %s failed (%s): removing it by force", container.short_id, _explain(exc))
                await self._call(self._remove_quietly, container.id)
        return await self._remove(worker, container)

    async def kill(self, worker: Worker) -> int:
        worker.runtime_state["killed"] = True
        container = await self._launched(worker)
        if container is not None:
            await self._call(self._remove_quietly, container.id)  # SIGKILL and remove in one call
        return await self._remove(worker, container)

    async def _launched(self, worker: Worker) -> Container | None:
        """The worker's container, once a launch still under way has finished; None if none was created."""
        if launch := worker.runtime_state.get("launch"):
            with contextlib.suppress(Exception):
                await asyncio.shield(launch)
        return worker.runtime_state.get("container")

    async def _remove(self, worker: Worker, container: Container | None) -> int:
        code = EXIT_UNKNOWN
        if container is not None:
            try:
                code = await asyncio.wait_for(asyncio.shield(worker.runtime_state["exit"]), REMOVAL_TIMEOUT_S)
            except TimeoutError:
                log.warning("container %s not removed after %.0f s: forcing it", container.short_id, REMOVAL_TIMEOUT_S)
            await self._call(self._ensure_removed, container.id)
            # Let the log stream hand over what the worker wrote last (it ends with the container).
            if logs := worker.runtime_state.get("logs"):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(logs), 1.0)
        if directory := worker.runtime_state.get("directory"):
            shutil.rmtree(directory, ignore_errors=True)
        return code

    def _remove_quietly(self, container_id: str) -> None:
        """Force-remove (SIGKILL first if running); gone already or being removed is fine."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress (auto_remove)
                log.warning("removing container %s failed: %s", container_id[:12], _explain(exc))

    def _ensure_removed(self, container_id: str, timeout_s: float = REMOVAL_TIMEOUT_S) -> bool:
        """Poll until the engine no longer knows the container, removing it by force meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client.api.inspect_container(container_id)
            except NotFound:
                return True
            except ENGINE_ERRORS as exc:
                log.warning("inspecting container %s failed: %s", container_id[:12], _explain(exc))
            if time.monotonic() >= deadline:
                log.error("container %s still exists %.0f s after its removal", container_id[:12], timeout_s)
                return False
            self._remove_quietly(container_id)
            time.sleep(0.05)

    # --- why a container ended -----------------------------------------------------------

    def _watch_ooms(self) -> None:
        """Follow the engine's OOM events of this supervisor's containers (one daemon thread)."""
        if self._oom_watch is not None and self._oom_watch.is_alive():
            return
        self._oom_watch = threading.Thread(
            target=self._follow_ooms, name=f"docker-oom-{self.supervisor_id}", daemon=True
        )
        self._oom_watch.start()

    def _follow_ooms(self) -> None:
        filters = {"type": "container", "event": "oom", "label": f"{LABEL_SUPERVISOR}={self.supervisor_id}"}
        while True:
            try:
                for event in self.client.api.events(decode=True, filters=filters):
                    if container_id := event.get("id"):
                        self._oom_killed[container_id] = None
                        while len(self._oom_killed) > OOM_MEMORY:
                            self._oom_killed.pop(next(iter(self._oom_killed)))
            except ENGINE_ERRORS as exc:
                log.warning("following OOM events failed (%s); again in 1 s", _explain(exc))
            time.sleep(1.0)  # the stream ended (engine restarted): follow it again

    def prepare(self, runtime: str) -> None:
        """Nothing to start ahead: the engine and the images are there or not."""

    async def close(self) -> None:
        """Nothing of its own to stop: every container went with its worker."""

    async def exit_cause(self, worker: Worker, code: int) -> ExitCause | None:
        """Why the container ended on its own: its memory limit (OOM event), CPU time, a crash."""
        container: Container | None = worker.runtime_state.get("container")
        if container is None or code == EXIT_UNKNOWN:
            return None
        limits = worker.plugin.limits
        if code == 128 + signal.SIGKILL and not worker.runtime_state.get("killed"):
            # The event is sent before the exit, but our stream may lag behind the exit wait.
            for _ in range(int(OOM_EVENT_WAIT_S / 0.02)):
                if container.id in self._oom_killed:
                    break
                await asyncio.sleep(0.02)
        if container.id in self._oom_killed:
            return exits.memory_limit(limits)
        if code == 128 + signal.SIGXCPU:
            return exits.from_signal(signal.SIGXCPU, limits)
        if worker.exited_unasked and code > 128:
            return exits.from_signal(code - 128, limits)
        if worker.exited_unasked and code > 0:
            return exits.from_status(code)
        return None

    # --- crash recovery -------------------------------------------------------------------

    async def reap_orphans(self) -> int:
        """Remove the containers an earlier life of this supervisor left behind, and their directories.

        A supervisor killed with SIGKILL leaves its containers running (nothing ties their life
        to it); they carry its id as a label. Called before the supervisor serves, so every
        container with that label, and every directory under its socket root, is stale.
        """
        return await self._call(self._reap)

    def _reap(self) -> int:
        # The low-level listing: the model's list() fetches each container after listing it
        # and fails when an auto-removed one disappears in between.
        found = self.client.api.containers(
            all=True, quiet=True, filters={"label": f"{LABEL_SUPERVISOR}={self.supervisor_id}"}
        )
        for container in found:
            self._remove_quietly(container["Id"])
        # This supervisor's next workers reuse the names: wait until they are really free.
        for container in found:
            self._ensure_removed(container["Id"])
        if self.socket_root.is_dir():
            for directory in self.socket_root.iterdir():
                shutil.rmtree(directory, ignore_errors=True)
        return len(found)

    # --- threads --------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short blocking SDK call on the private pool (not asyncio's default one)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    @staticmethod
    def _in_thread(function: Callable[..., T], *args: Any, name: str) -> asyncio.Future[T]:
        """Run a long blocking call on a daemon thread of its own; its result as a future.

        Daemon: a wait the engine never answers must not keep the supervisor from exiting
        (pool threads are joined at exit).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def run() -> None:
            try:
                result = function(*args)
            except BaseException as exc:
                _call_soon(loop, settle, functools.partial(future.set_exception, exc))
            else:
                _call_soon(loop, settle, functools.partial(future.set_result, result))

        threading.Thread(target=run, name=name, daemon=True).start()
        return future


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Hand ``callback`` to the event loop from another thread; nothing if the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _explain(exc: BaseException) -> str:
    """The engine's own message where there is one (APIError's str() adds the URL)."""
    return str(getattr(exc, "explanation", None) or exc)
