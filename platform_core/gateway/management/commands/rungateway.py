"""``manage.py rungateway --bind 127.0.0.1 --port 8080``: recover, then serve the gateway (daphne).

Before it serves, the gateway finishes what an earlier life of the same instance left behind
(``recovery.gateway_recover``): invocations still ``running`` become ``interrupted`` and their
workers are taken back from the supervisors. The instance id is ``GATEWAY_INSTANCE_ID``, by
default HOST:PORT, so that several gateways on one host do not take each other for their past.
Then this process becomes daphne (exec: same pid, so whoever started it can stop it).
"""

from __future__ import annotations

import os
import socket
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from platform_core.gateway.recovery import gateway_recover


class Command(BaseCommand):
    help = "Mark what an earlier life of this gateway left running as interrupted, then run daphne."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8080)

    def handle(self, *args, bind: str, port: int, **options):
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
        os.execvpe(
            sys.executable,
            [sys.executable, "-m", "daphne", "-b", bind, "-p", str(port), "platform_core.asgi:application"],
            {**os.environ, "GATEWAY_INSTANCE_ID": instance_id},
        )
