"""Prometheus metrics of gateways and supervisors (``prometheus-client``).

Counting happens in one place per process kind, where the fact is recorded anyway:

* **Gateway**: ``invocation_count`` when an invocation is recorded (invocations by plugin, status
  and HTTP status; phase durations by plugin and mode; admission refusals): a few dictionary
  look-ups and increments, microseconds. Seats this process keeps (idle, busy, callers waiting)
  are sampled every few seconds, off the hot path. Supervisors (up or down, their workers by
  state) are asked when ``/metrics`` is scraped.
* **Supervisor**: its workers, pools, queue and leases are read from its state at each scrape
  (``SupervisorCollector``); allocations and worker start times are counted by the gRPC adapter.

With several gateway processes, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory, the same
for all of them, before they start): every process writes its counts there and any of them
answers ``/metrics`` with the sum (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

if TYPE_CHECKING:
    from platform_core.supervisor.service import Supervisor

log = logging.getLogger(__name__)

# Seconds: from a warm invocation (~1 ms) to a slow container start (tens of seconds).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
PHASES = ("allocation", "init", "execution", "release", "total")
SEATS_SAMPLE_INTERVAL_S = 5.0

# --- gateway -----------------------------------------------------------------------------------
INVOCATIONS = Counter(
    "platform_invocations",
    "Invocations recorded, by plugin, final status and HTTP status",
    ["plugin", "status", "http_status"],
)
PHASE_SECONDS = Histogram(
    "platform_invocation_phase_seconds",
    "Duration of each phase of an invocation (allocation, init, execution, release, total), by plugin and worker mode",
    ["plugin", "mode", "phase"],
    buckets=BUCKETS,
)
REFUSALS = Counter(
    "platform_admission_refusals",
    "Invocations refused by admission control (429), by tenant and reason",
    ["tenant", "reason"],
)
SEATS = Gauge(
    "platform_gateway_seats",
    "Pooled worker seats gateway processes keep, by plugin and state (idle, busy)",
    ["plugin", "state"],
    multiprocess_mode="livesum",
)
SEAT_WAITERS = Gauge(
    "platform_gateway_seat_waiters",
    "Invocations waiting in a gateway for a pooled seat (its queue), by plugin",
    ["plugin"],
    multiprocess_mode="livesum",
)

# --- supervisor --------------------------------------------------------------------------------
ALLOCATIONS = Counter(
    "platform_allocations",
    "Allocations answered by this supervisor, by plugin and outcome (warm, cold, or the error)",
    ["plugin", "outcome"],
)
WORKER_START_SECONDS = Histogram(
    "platform_worker_start_seconds",
    "From a worker's spawn to its readiness, by plugin and backend",
    ["plugin", "backend"],
    buckets=BUCKETS,
)

# Label children, cached: ``labels()`` takes a lock and formats every label; this is a dict get.
_invocation_children: dict[tuple[str, str, int], Any] = {}
_phase_children: dict[tuple[str, str], tuple[Any, ...]] = {}


def invocation_count(
    *,
    plugin: str,
    mode: str,
    status: str,
    http_status: int,
    timings_ms: dict[str, float | None],
    refusal: str = "",
    tenant: str = "",
) -> None:
    """Count one recorded invocation (``plugin`` "" when no plugin of that name was found;
    ``refusal``: the admission code when it was refused)."""
    key = (plugin, status, http_status)
    if (counter := _invocation_children.get(key)) is None:
        counter = _invocation_children[key] = INVOCATIONS.labels(plugin, status, str(http_status))
    counter.inc()
    if refusal:
        REFUSALS.labels(tenant, refusal).inc()
    if not plugin:
        return
    if (histograms := _phase_children.get((plugin, mode))) is None:
        histograms = _phase_children[(plugin, mode)] = tuple(PHASE_SECONDS.labels(plugin, mode, p) for p in PHASES)
    for phase, histogram in zip(PHASES, histograms, strict=True):
        if (value := timings_ms.get(phase)) is not None:
            histogram.observe(value / 1000)


# Seats by plugin: (idle, busy, waiting). Set by the gateway (``gateway/leases.py``), which keeps
# them: observability reads them without importing the gateway.
SeatCounts = Callable[[], Mapping[str, tuple[int, int, int]]]
_seat_counts: SeatCounts | None = None


def seat_counts_source(counts: SeatCounts) -> None:
    """Where ``seats_sample`` reads this process's seats from."""
    global _seat_counts
    _seat_counts = counts


def seats_sample() -> None:
    """Set the seat gauges from the seats this process keeps (every event loop's)."""
    if _seat_counts is None:  # no gateway in this process
        return
    for plugin, (idle, busy, waiting) in _seat_counts().items():
        SEATS.labels(plugin, "idle").set(idle)
        SEATS.labels(plugin, "busy").set(busy)
        SEAT_WAITERS.labels(plugin).set(waiting)


_sampling: set[asyncio.AbstractEventLoop] = set()


def seats_sampling_start() -> None:
    """Sample this process's seats every few seconds (once per event loop, from its first invocation)."""
    loop = asyncio.get_running_loop()
    if loop in _sampling:
        return
    _sampling.add(loop)

    async def sample_forever() -> None:
        while True:
            try:
                seats_sample()
            except Exception:  # a sample is not worth an invocation
                log.debug("sampling seats failed", exc_info=True)
            await asyncio.sleep(SEATS_SAMPLE_INTERVAL_S)

    task = loop.create_task(sample_forever())
    _tasks.add(task)


_tasks: set[asyncio.Task[None]] = set()


def supervisor_families(supervisors: list[dict]) -> list[GaugeMetricFamily]:
    """Supervisor availability and their workers by state, from ``runtime_client.workers_list``."""
    up = GaugeMetricFamily(
        "platform_supervisor_up", "1 when the supervisor answered the gateway", labels=["runtime", "address"]
    )
    limit = GaugeMetricFamily(
        "platform_supervisor_max_workers", "Worker slots of each supervisor", labels=["runtime", "address"]
    )
    workers = GaugeMetricFamily(
        "platform_supervisor_workers",
        "Workers of each supervisor, by plugin and lifecycle state (as the gateway was told)",
        labels=["runtime", "address", "plugin", "state"],
    )
    for entry in supervisors:
        runtime, address = entry["runtime"], entry["address"]
        up.add_metric([runtime, address], 1.0 if entry.get("up") else 0.0)
        if entry.get("up"):
            limit.add_metric([runtime, address], entry.get("max_workers", 0))
        counts: dict[tuple[str, str], int] = {}
        for worker in entry.get("workers", []):
            key = (worker["plugin"], worker["state"])
            counts[key] = counts.get(key, 0) + 1
        for (plugin, state), count in sorted(counts.items()):
            workers.add_metric([runtime, address, plugin, state], count)
    return [up, limit, workers]


class _Families(Collector):
    def __init__(self, families: Iterable[Any]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Any]:
        yield from self.families


def exposition(extra: Iterable[Any] = ()) -> tuple[bytes, str]:
    """The Prometheus text of this process (or of every process in multiprocess mode), plus ``extra``
    families measured at scrape time; and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    extra = list(extra)
    if extra:
        scrape = CollectorRegistry()
        scrape.register(_Families(extra))
        body += generate_latest(scrape)
    return body, CONTENT_TYPE_LATEST


def multiprocess_prepare(directory: str) -> None:
    """Empty ``directory`` for a new set of gateway processes (prometheus-client needs it clean at start)."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def process_exited(pid: int) -> None:
    """Tell multiprocess mode that gateway process ``pid`` is gone (its live gauges drop out)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# --- who may scrape ----------------------------------------------------------------------------


def scrape_allowed(*, token: str, authorization: str, client_host: str) -> bool:
    """With METRICS_TOKEN set: the request carries it (``Authorization: Bearer``), from anywhere.
    Without: only from loopback (a reverse proxy on the same host is loopback too: set a token)."""
    if token:
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    try:
        return ipaddress.ip_address(client_host.split("%", 1)[0]).is_loopback
    except ValueError:
        return client_host == "localhost"


# --- supervisor ----------------------------------------------------------------------------------


class SupervisorCollector(Collector):
    """A supervisor's state at scrape time: workers, pools, queue, leases."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        supervisor = self.supervisor
        base = [supervisor.runtime, supervisor.supervisor_id]
        labels = ["runtime", "supervisor"]
        slots = GaugeMetricFamily("platform_worker_slots", "Worker slots of this supervisor", labels=labels)
        slots.add_metric(base, supervisor.max_workers)
        yield slots
        workers = GaugeMetricFamily(
            "platform_workers",
            "Workers of this supervisor, by plugin, backend and lifecycle state",
            labels=[*labels, "plugin", "backend", "state"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        leases = busy = 0
        for worker in list(supervisor.workers.values()):
            key = (worker.plugin.name, worker.backend, worker.state.name.lower())
            counts[key] = counts.get(key, 0) + 1
            leases += len(worker.leases)
            busy += sum(1 for lease in worker.leases.values() if lease.busy)
        for key, count in sorted(counts.items()):
            workers.add_metric([*base, *key], count)
        yield workers
        held = GaugeMetricFamily(
            "platform_leases",
            "Leases gateways hold on this supervisor's workers, by use",
            labels=[*labels, "use"],
        )
        held.add_metric([*base, "busy"], busy)
        held.add_metric([*base, "idle"], leases - busy)
        yield held
        pool_workers = GaugeMetricFamily(
            "platform_pool_workers",
            "Workers of each pool, by state (idle, busy, starting)",
            labels=[*labels, "plugin", "state"],
        )
        pool_limit = GaugeMetricFamily(
            "platform_pool_max_workers", "Largest size of each pool", labels=[*labels, "plugin"]
        )
        queue = GaugeMetricFamily(
            "platform_pool_queue", "Allocations waiting for a seat of each pool", labels=[*labels, "plugin"]
        )
        for pool in list(supervisor.pools.pools.values()):
            name = pool.plugin.name
            idle = len(pool.idle())
            pool_workers.add_metric([*base, name, "idle"], idle)
            pool_workers.add_metric([*base, name, "busy"], len(pool.workers) - idle)
            pool_workers.add_metric([*base, name, "starting"], pool.starting)
            pool_limit.add_metric([*base, name], pool.spec.max_workers)
            queue.add_metric([*base, name], len(pool.waiters))
        yield pool_workers
        yield pool_limit
        yield queue


def allocation_count(*, plugin: str, outcome: str, events: Iterable[Any] = (), backend: str = "") -> None:
    """Count an allocation a supervisor answered; the spawn-to-ready time of a worker it started."""
    ALLOCATIONS.labels(plugin, outcome).inc()
    spawned = ready = None
    for event in events:
        name = event.state.name
        if name == "SPAWNING":
            spawned = event.at_ns
        elif name == "READY":
            ready = event.at_ns
    if spawned is not None and ready is not None and ready >= spawned:
        WORKER_START_SECONDS.labels(plugin, backend).observe((ready - spawned) / 1e9)


async def serve_metrics(host: str, port: int, *, registry: CollectorRegistry, token: str) -> asyncio.Server:
    """A minimal HTTP server answering ``GET /metrics`` from ``registry`` (a supervisor's own port).

    In the supervisor's event loop: its state is read between two of its steps, never
    concurrently with them. Same protection as the gateway's ``/metrics``.
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readuntil(b"\r\n\r\n")
            lines = request.decode("latin-1").split("\r\n")
            method, path, *_ = [*lines[0].split(" "), "", ""]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            peer = writer.get_extra_info("peername")
            client = peer[0] if isinstance(peer, tuple) else "localhost"  # a Unix socket is local
            if not scrape_allowed(token=token, authorization=headers.get("authorization", ""), client_host=client):
                status, body, kind = _refusal(
                    "403 Forbidden", "forbidden", "set METRICS_TOKEN to scrape from beyond loopback"
                )
            elif method != "GET" or path.split("?", 1)[0] != "/metrics":
                status, body, kind = _refusal("404 Not Found", "not_found", "only GET /metrics is served here")
            else:
                status, body, kind = "200 OK", generate_latest(registry), CONTENT_TYPE_LATEST
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


def _refusal(status: str, code: str, message: str) -> tuple[str, bytes, str]:
    """An error in the platform's error shape (``{"error": {"code", "message"}}``)."""
    return status, json.dumps({"error": {"code": code, "message": message}}).encode(), "application/json"


def supervisor_registry(supervisor: Supervisor) -> CollectorRegistry:
    """The supervisor's metrics: its state at scrape time, and its counters."""
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(supervisor))
    registry.register(ALLOCATIONS)
    registry.register(WORKER_START_SECONDS)
    return registry
