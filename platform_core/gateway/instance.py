"""Which gateway this process is: an instance id that outlives restarts, and when this life began.

Invocations and worker leases carry both, so that a gateway that starts again can tell what
its own earlier lives left unfinished (and only that: other gateway processes have other ids).
"""

from __future__ import annotations

import socket
import time

from django.conf import settings

INSTANCE_ID: str = settings.PLATFORM_GATEWAY_INSTANCE or socket.gethostname()
# Nanoseconds since the epoch when this process loaded the gateway.
STARTED_NS: int = time.time_ns()
