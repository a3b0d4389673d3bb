"""What the supervisor refuses or fails with; the gRPC adapter turns each into a status code."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base of the errors the gRPC adapter turns into status codes."""


class CapacityExhausted(SupervisorError):
    """No free worker slot (or seat), nor one freed within the wait allowed."""


class UnknownWorker(SupervisorError):
    pass


class InvalidRequest(SupervisorError):
    pass


class WorkerNotReady(SupervisorError):
    """The worker did not answer its readiness probe in time."""


class WorkerFailedToStart(SupervisorError):
    """The backend could not start the worker, or it died before it was ready."""
