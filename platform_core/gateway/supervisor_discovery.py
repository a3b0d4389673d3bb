"""Which supervisors a gateway talks to: ``SUPERVISORS``, with ``dns:`` entries expanded.

A fixed list (``python=sup-a:9092|sup-b:9092``) suits hosts you name. Supervisors that come and
go with the nodes of a cluster (a Kubernetes DaemonSet behind a headless Service) are named once:
``python=dns:platform-supervisor-python.platform.svc.cluster.local:9092`` stands for every
address that name resolves to, each a supervisor of its own (capacity, fail-over, the workers
board). Names are resolved again every ``SUPERVISOR_DISCOVERY_INTERVAL_S`` in a background
thread, never on the request path; until a name has resolved once it stands for nothing (and an
allocation for that runtime answers 503 as with no supervisor).

With ``dns:`` entries the supervisors' certificates cannot name each address: give them one
name (``SUPERVISOR_TLS_SERVER_NAME``) and put that name in every supervisor's certificate.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from django.conf import settings

log = logging.getLogger(__name__)

PREFIX = "dns:"


def _resolve(entry: str) -> list[str]:
    """``dns:NAME:PORT`` → ["IP:PORT", ...] (IPv6 in brackets), sorted so that the order is stable."""
    name, _, port = entry.removeprefix(PREFIX).rpartition(":")
    infos = socket.getaddrinfo(name, int(port), type=socket.SOCK_STREAM)
    addresses = {f"[{info[4][0]}]:{port}" if info[0] == socket.AF_INET6 else f"{info[4][0]}:{port}" for info in infos}
    return sorted(addresses)


class Discovery:
    def __init__(self, configured: dict[str, list[str]], *, interval_s: float) -> None:
        self.configured = configured
        self.interval_s = interval_s
        self._resolved: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dynamic = any(a.startswith(PREFIX) for addresses in configured.values() for a in addresses)

    def supervisors(self) -> dict[str, list[str]]:
        """Runtime → supervisor addresses, ``dns:`` entries replaced by what they resolved to."""
        if not self.dynamic:
            return self.configured
        self._ensure_refreshing()
        with self._lock:
            resolved = dict(self._resolved)
        return {
            runtime: [
                address
                for entry in entries
                for address in (resolved.get(entry, []) if entry.startswith(PREFIX) else [entry])
            ]
            for runtime, entries in self.configured.items()
        }

    def refresh(self) -> None:
        """Resolve every ``dns:`` entry now; one that fails keeps its last answer."""
        for entries in self.configured.values():
            for entry in (e for e in entries if e.startswith(PREFIX)):
                try:
                    addresses = _resolve(entry)
                except (OSError, ValueError) as exc:
                    log.warning("supervisor discovery: %s does not resolve: %s", entry, exc)
                    continue
                with self._lock:
                    self._resolved[entry] = addresses

    def _ensure_refreshing(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="supervisor-discovery", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while _discovery is self:  # a replaced discovery (settings changed in tests) stops
            self.refresh()
            time.sleep(self.interval_s)


_discovery: Discovery | None = None


def supervisors_configured() -> dict[str, list[str]]:
    """Every supervisor of every runtime, as this gateway knows them now."""
    global _discovery
    if _discovery is None or _discovery.configured is not settings.PLATFORM_SUPERVISORS:
        _discovery = Discovery(settings.PLATFORM_SUPERVISORS, interval_s=settings.PLATFORM_SUPERVISOR_DISCOVERY_S)
    return _discovery.supervisors()
