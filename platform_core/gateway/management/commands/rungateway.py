"""``manage.py rungateway --bind 127.0.0.1 --port 8080``: recover, then serve the gateway.

Before it serves, the gateway finishes what an earlier life of the same instance left behind
(``recovery.gateway_recover``): invocations still ``running`` become ``interrupted`` and their
workers are taken back from the supervisors. The instance id is ``GATEWAY_INSTANCE_ID``, by
default HOST:PORT, so that several gateways on one host do not take each other for their past.
Then this process serves: uvicorn (``gateway/http_server.py``; one process per core with
``REDIS_URL``, this one supervising them), granian with ``GATEWAY_SERVER=granian`` or daphne with
``GATEWAY_SERVER=daphne`` (exec). Same pid either way, so whoever started it can stop it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from platform_core.gateway import http_server, instance
from platform_core.gateway.http_server import APPLICATION
from platform_core.gateway.recovery import gateway_recover
from platform_core.observability import metrics


class Command(BaseCommand):
    help = "Mark what an earlier life of this gateway left running as interrupted, then serve (uvicorn or daphne)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080)

    def handle(self, *args: Any, bind: str, port: int, **options: Any) -> None:
        instance_id = settings.PLATFORM_GATEWAY_INSTANCE or f"{socket.gethostname()}:{port}"
        # Everything of this instance that started before now belongs to an earlier life.
        recovery = gateway_recover(instance_id=instance_id, started_before_ns=time.time_ns())
        reclaimed = sum(len(ids) for ids in recovery.reclaimed.values() if isinstance(ids, list))
        if recovery.interrupted or reclaimed:
            self.stderr.write(
                f"gateway {instance_id}: {len(recovery.interrupted)} invocation(s) marked interrupted, "
                f"{reclaimed} worker(s) reclaimed from its earlier life"
            )
        sys.stdout.flush()
        sys.stderr.flush()
        # This process's identity, for the server below and every process it starts.
        os.environ["GATEWAY_INSTANCE_ID"] = settings.PLATFORM_GATEWAY_INSTANCE = instance.INSTANCE_ID = instance_id
        if settings.PLATFORM_BENCH_SKIP_HISTORY:
            self.stderr.write("BENCH_SKIP_HISTORY is set: invocations are NOT recorded (benchmark only)")
        if settings.PLATFORM_GATEWAY_SERVER == "daphne":
            os.execvp(sys.executable, [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), APPLICATION])
        workers = http_server.processes()
        if workers > 1 and not settings.PLATFORM_REDIS_URL:
            self.stderr.write(
                f"{workers} gateway processes without REDIS_URL: live events reach only the WebSockets of "
                "the process that ran the invocation (the in-memory channel layer is per process)"
            )
        if workers > 1:
            # Metrics of every process at /metrics, whichever answers (prometheus-client's
            # multiprocess mode; each process starts fresh and reads the variable at import).
            directory = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.VAR_DIR / f"prometheus-{port}"))
            metrics.multiprocess_prepare(directory)
        if settings.PLATFORM_GATEWAY_SERVER == "granian":
            command = http_server.granian_command(bind=bind, port=port, workers=workers)
            self.stderr.write(f"gateway {instance_id}: granian, {workers} process(es), on {bind}:{port}")
            os.execvp(command[0], command)
        self.stderr.write(f"gateway {instance_id}: uvicorn, {workers} process(es), on {bind}:{port}")
        http_server.serve(bind=bind, port=port, workers=workers)
