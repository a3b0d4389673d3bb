"""``manage.py runsupervisor --runtime python --listen 127.0.0.1:9092``: run a runtime supervisor.

Any runtime of the registry (``manage.py runtime list``): a worker's command comes with each
allocation (``PluginRef.runtime_spec``), so the supervisor needs no database to start workers.
When it can read the registry, it checks that the runtime exists and starts that runtime's
zygote (if it has one) from the registry's recipe before the first allocation.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any, cast

import grpc
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platform_core.observability.metrics import serve_metrics, supervisor_registry
from platform_core.observability.tracing import tracing_setup
from platform_core.rpc.host_identity import local_host
from platform_core.rpc.secret import SecretCheck
from platform_core.runtimes import RuntimeSpec
from platform_core.supervisor import grpc_service
from platform_core.supervisor.backends import WorkerBackend
from platform_core.supervisor.backends.process import Launcher, ProcessBackend, default_launchers
from platform_core.supervisor.grpc_service import plugin_ref
from platform_core.supervisor.health import serve_health
from platform_core.supervisor.model import PluginRef
from platform_core.supervisor.ppp_relay import PppRelay, server_ssl_context
from platform_core.supervisor.service import Supervisor
from platform_core.supervisor.stemcells import parse_plans
from platform_core.tls import server_credentials

log = logging.getLogger("platform_core.supervisor")


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host in {"localhost", "::1"} or host.startswith("127.") or address.startswith("unix:")


def _platform_state() -> list[Path]:
    """Where the platform keeps its state: var/ (secret key, dev API key) and the SQLite file."""
    paths = [Path(settings.VAR_DIR)]
    database = settings.DATABASES["default"]
    if "sqlite" in database["ENGINE"]:
        paths.append(Path(str(database["NAME"])))
    return paths


class Command(BaseCommand):
    help = "Run the runtime supervisor of one runtime (gRPC RuntimeSupervisor service)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--runtime", required=True, help="a runtime of the registry: python, java, node...")
        parser.add_argument("--listen", help="host:port to serve on (default: this runtime's entry in SUPERVISORS)")
        parser.add_argument(
            "--backend", choices=["process", "docker"], help="default worker backend (default: WORKER_BACKEND)"
        )
        parser.add_argument(
            "--backends",
            help=(
                "comma-separated backends to enable besides the default, for plugins whose registry `backend` "
                "asks for another one, e.g. docker (default: WORKER_BACKENDS; process is always enabled)"
            ),
        )
        parser.add_argument(
            "--relay-listen",
            help="host:port of the PPP relay, for gateways on other hosts (default: --listen's host, any free port)",
        )
        parser.add_argument(
            "--health-listen",
            help="host:port of a plain-text grpc.health.v1 service for probes, nothing else (default: none)",
        )
        parser.add_argument(
            "--metrics-listen",
            help=(
                "host:port of a Prometheus /metrics endpoint (default: none); beyond loopback it needs METRICS_TOKEN "
                "(docs/OBSERVABILITY.md)"
            ),
        )
        parser.add_argument("--metrics-port", type=int, help="shorthand for --metrics-listen 127.0.0.1:PORT")
        parser.add_argument("--max-workers", type=int, default=settings.PLATFORM_SUPERVISOR_MAX_WORKERS)
        parser.add_argument("--id", dest="supervisor_id", help="supervisor id (default: RUNTIME-PORT)")
        parser.add_argument(
            "--allow-remote",
            action="store_true",
            help="allow a non-loopback --listen address (requires mutual TLS: SUPERVISOR_TLS_*, docs/DEPLOYMENT.md)",
        )

    def handle(
        self,
        *args: Any,
        runtime: str,
        listen: str | None,
        relay_listen: str | None,
        health_listen: str | None,
        metrics_listen: str | None,
        metrics_port: int | None,
        backend: str | None,
        backends: str | None,
        max_workers: int,
        supervisor_id: str | None,
        allow_remote: bool,
        **options: Any,
    ) -> None:
        addresses = settings.PLATFORM_SUPERVISORS.get(runtime)
        listen = listen or (addresses[0] if addresses else None)
        if not listen:
            raise CommandError(f"no --listen given and SUPERVISORS has no entry for runtime {runtime!r}")
        # Default: beside the API (any free port); an API on a Unix socket has no host to share.
        relay_listen = relay_listen or (
            "127.0.0.1:0" if listen.startswith("unix:") else f"{listen.rsplit(':', 1)[0]}:0"
        )
        for address in (listen, relay_listen):
            if _is_loopback(address):
                continue
            if not allow_remote:
                raise CommandError(f"refusing to listen on {address}: not loopback (pass --allow-remote deliberately)")
            if settings.PLATFORM_SUPERVISOR_TLS is None:
                # Beyond loopback the relay carries tenants' data and the API starts workers: both
                # need an authenticated, encrypted peer, which a shared secret alone is not.
                raise CommandError(
                    f"refusing to listen on {address} without mutual TLS (SUPERVISOR_TLS_CERT, _KEY, _CA): "
                    "every caller could start workers and read their traffic (docs/DEPLOYMENT.md, Mutual TLS)"
                )
        if metrics_listen is None and metrics_port is not None:
            metrics_listen = f"127.0.0.1:{metrics_port}"
        if metrics_listen and not _is_loopback(metrics_listen) and not settings.PLATFORM_METRICS_TOKEN:
            raise CommandError(f"refusing to serve metrics on {metrics_listen} without METRICS_TOKEN (beyond loopback)")
        supervisor_id = supervisor_id or f"{runtime}-{listen.rsplit(':', 1)[-1]}"
        tracing_setup(role=f"supervisor-{runtime}")
        launchers = default_launchers()
        if (registered := self._registered_recipe(runtime)) is not None:
            launchers[runtime] = Launcher.from_spec(registered)
        backend = backend or settings.PLATFORM_WORKER_BACKEND
        extra = settings.PLATFORM_WORKER_BACKENDS if backends is None else [b for b in backends.split(",") if b]
        if unknown := sorted(set(extra) - {"process", "docker"}):
            raise CommandError(f"--backends: unknown backend(s) {', '.join(unknown)} (process, docker)")
        enabled: dict[str, WorkerBackend] = {
            "process": ProcessBackend(
                supervisor_id=supervisor_id,
                socket_root=Path(settings.PLATFORM_SOCKET_ROOT),
                output_limit=settings.PLATFORM_MAX_LOG_BYTES,
                zygote=settings.PLATFORM_PYTHON_WORKER_ZYGOTE,
                launchers=launchers,
                sandbox=settings.PLATFORM_WORKER_SANDBOX,
                sandbox_uid=settings.PLATFORM_WORKER_SANDBOX_UID,
                sandbox_gid=settings.PLATFORM_WORKER_SANDBOX_GID,
                # Never in a worker's view, whatever a runtime's paths include: the database, secrets.
                hidden=_platform_state(),
            )
        }
        # Enabled explicitly, never because an engine happens to answer: a plugin asking for the
        # docker backend gets containers or a clear error, not whatever the machine offers.
        if "docker" in {backend, *extra}:
            from platform_core.supervisor.backends.docker import DockerBackend, DockerUnavailable  # supervisors only

            try:
                enabled["docker"] = DockerBackend.from_settings(supervisor_id=supervisor_id, max_workers=max_workers)
            except DockerUnavailable as exc:
                raise CommandError(f"docker backend: {exc}") from exc
        try:
            stem_cells = parse_plans(
                settings.PLATFORM_STEM_CELLS, runtime, memory_mb=settings.PLATFORM_STEM_CELL_MEMORY_MB
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        supervisor = Supervisor(
            runtime=runtime,
            supervisor_id=supervisor_id,
            backends=enabled,
            default_backend=backend,
            max_workers=max_workers,
            ready_timeout_s=settings.PLATFORM_WORKER_READY_TIMEOUT_S,
            stop_grace_s=settings.PLATFORM_WORKER_STOP_GRACE_S,
            output_limit=settings.PLATFORM_MAX_LOG_BYTES,
            lease_ttl_s=settings.PLATFORM_LEASE_TTL_S,
            tenant_share=settings.PLATFORM_TENANT_SLOT_SHARE,
            stem_cells=[plan for plan in stem_cells if plan.backend in enabled],
            stem_cell_spec=registered,
        )
        # The host id describes the socket root: it must exist before anyone asks.
        Path(settings.PLATFORM_SOCKET_ROOT).mkdir(parents=True, exist_ok=True)
        asyncio.run(
            self._serve(supervisor, listen, relay_listen, health_listen, metrics_listen, self._pooled_plugins(runtime))
        )

    def _registered_recipe(self, runtime: str) -> RuntimeSpec | None:
        """The registry's recipe of ``runtime``; None when the registry cannot be read (fine:
        requests bring the recipe). A runtime the registry does not know is an error."""
        from django.db import DatabaseError

        from platform_core.registry.models import Runtime

        try:
            entry = Runtime.objects.filter(name=runtime).first()
            known = [] if entry else list(Runtime.objects.values_list("name", flat=True))
        except DatabaseError as exc:
            log.warning("cannot read the registry (%s): workers start from the recipe each request brings", exc)
            return None
        if entry is None:
            raise CommandError(
                f"no runtime {runtime!r} in the registry (known: {', '.join(known) or 'none'}); "
                "add it with `manage.py runtime add`"
            )
        if problems := entry.spec().errors():
            raise CommandError(f"runtime {runtime!r} cannot start workers: {'; '.join(problems)}")
        return entry.spec()

    def _pooled_plugins(self, runtime: str) -> list[PluginRef]:
        """Pooled plugins of this runtime in the registry: their pools are warmed at start."""
        from django.db import DatabaseError

        from platform_core.registry.models import PluginSpec, WorkerMode
        from platform_core.registry.refs import plugin_ref_message

        try:
            specs = list(
                PluginSpec.objects.select_related("runtime").filter(
                    runtime__name=runtime, enabled=True, mode=WorkerMode.POOLED
                )
            )
        except DatabaseError as exc:  # a supervisor without the registry still serves allocations
            log.warning("cannot read the registry to pre-warm pools: %s", exc)
            return []
        return [plugin_ref(plugin_ref_message(spec)) for spec in specs]

    async def _serve(
        self,
        supervisor: Supervisor,
        listen: str,
        relay_listen: str,
        health_listen: str | None,
        metrics_listen: str | None,
        pooled: list[PluginRef],
    ) -> None:
        # Handled from the start: a SIGTERM that comes as soon as the port is open (or earlier)
        # still gets an orderly shutdown, not the default death that skips it.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await supervisor.start()
        for plugin in pooled:
            try:
                supervisor.prewarm(plugin)
            except Exception as exc:
                log.warning("cannot pre-warm %s: %s", plugin.name, exc)
        # With a secret configured, every call must carry it (also on loopback).
        secret = settings.PLATFORM_SUPERVISOR_SECRET
        server = grpc.aio.server(interceptors=[SecretCheck(secret)] if secret else None)
        tls = settings.PLATFORM_SUPERVISOR_TLS
        relay = PppRelay(
            supervisor.workers,
            ssl_context=server_ssl_context(tls.cert, tls.key, tls.ca) if tls else None,
            secret=secret,
        )
        relay_host, _, relay_port_text = relay_listen.rpartition(":")
        try:
            relay_port = await relay.start(relay_host.strip("[]"), int(relay_port_text))
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot listen on {relay_listen} (--relay-listen): {exc}") from exc
        grpc_service.add_to_server(server, supervisor, relay_port=relay_port)
        port = server.add_secure_port(listen, server_credentials(tls)) if tls else server.add_insecure_port(listen)
        if port == 0:
            raise CommandError(f"cannot listen on {listen}")
        await server.start()
        isolation = cast(ProcessBackend, supervisor.backends["process"]).isolation
        health_server, health = await serve_health(health_listen) if health_listen else (None, None)
        metrics_server = None
        if metrics_listen:
            metrics_host, _, metrics_port = metrics_listen.rpartition(":")
            try:
                metrics_server = await serve_metrics(
                    metrics_host.strip("[]"),
                    int(metrics_port),
                    registry=supervisor_registry(supervisor),
                    token=settings.PLATFORM_METRICS_TOKEN,
                )
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot listen on {metrics_listen} (--metrics-listen): {exc}") from exc
        self.stdout.write(
            f"supervisor {supervisor.supervisor_id} ({supervisor.runtime}, "
            f"{supervisor.default_backend} backend; enabled: {', '.join(sorted(supervisor.backends))}) "
            f"listening on {listen}{' (mutual TLS)' if tls else ''}, PPP relay on port {relay_port}, "
            f"host {local_host().name} ({local_host().id}); process workers "
            f"{'sandboxed' if isolation.sandboxed else 'NOT SANDBOXED'}: {isolation.detail}"
        )
        self.stdout.flush()
        await stop.wait()
        log.info("supervisor %s stopping: %d worker(s) to stop", supervisor.supervisor_id, len(supervisor.workers))
        if health is not None:
            health.serving = False
        # Refuse new allocations, stop every worker, then let in-flight calls finish.
        await supervisor.shutdown()
        await server.stop(grace=2.0)
        await relay.close()
        if health_server is not None:
            await health_server.stop(None)
        if metrics_server is not None:
            metrics_server.close()
