"""Server-Sent Events of an invocation: its steps worth showing, then its outcome.

The stream of ``POST …/invoke`` (``Accept: text/event-stream``) and of ``GET
/api/v1/invocations/{id}/events``:

    event: accepted   data: {"invocation_id"}                      (POST only: the id, at once)
    event: queued     data: {"invocation_id", "seq", "offset_ms", "detail"}  (async invocations)
    event: allocated  data: {..., "worker_id"}                     a worker was allocated (or a kept seat used)
    event: started    data: {...}                                  PPP Invoke sent
    event: progress   data: {..., "percent", "message"}
    event: log        data: {..., "message"}
    event: cancelled  data: {...}                                  cancelled on request
    event: result     data: the body the JSON answer would have had (HTTP 200)
    event: error      data: the error body the JSON answer would have had, plus "http_status"

Each step carries the trace event's ``seq`` as the SSE ``id``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from platform_core.invocations.vocabulary import EventKind as K

CONTENT_TYPE = "text/event-stream"
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_PROGRESS = re.compile(r"^Progress\((?P<percent>[-0-9.e+]+)%, (?P<message>.*)\)$", re.S)
_NAMES = {
    K.QUEUED: "queued",
    K.WORKER_ALLOCATED: "allocated",
    K.LEASE_USED: "allocated",
    K.INVOKE_REQUEST: "started",
    K.PROGRESS: "progress",
    K.LOG: "log",
    K.INVOCATION_CANCELLED: "cancelled",
}


def wants_stream(accept: str) -> bool:
    """Whether an ``Accept`` header asks for Server-Sent Events."""
    return CONTENT_TYPE in accept.lower()


def frame(event: str, data: dict[str, Any], *, event_id: int | None = None) -> bytes:
    """One SSE message (a JSON document on one ``data:`` line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def comment(text: str) -> bytes:
    """An SSE comment (a keep-alive that clients ignore)."""
    return f": {text}\n\n".encode()


def step(invocation_id: str, event: dict[str, Any], data: dict[str, Any] | None = None) -> bytes | None:
    """The SSE message of a trace event (stored shape, ``data``: its structured facts), or None
    for a step not worth showing."""
    name = _NAMES.get(event["kind"])
    if name is None:
        return None
    body: dict[str, Any] = {
        "invocation_id": invocation_id,
        "seq": event["seq"],
        "offset_ms": event["offset_ms"],
        "detail": event["detail"],
    }
    kind = event["kind"]
    if kind == K.PROGRESS:
        if data is None and (match := _PROGRESS.match(event["detail"])):  # replayed from the stored trace
            data = {"percent": float(match["percent"]), "message": match["message"].strip("'\"")}
        body.update(data or {})
    elif kind == K.LOG:
        body["message"] = event["detail"].removeprefix("Log: ")
    elif kind in (K.WORKER_ALLOCATED, K.LEASE_USED):
        body["worker_id"] = event["detail"].split(":", 1)[0].strip()
    return frame(name, body, event_id=event["seq"])


def outcome_frame(status: int, body: dict[str, Any]) -> bytes:
    """The last message: ``result`` (HTTP 200) or ``error`` with the JSON answer's body."""
    if status == 200:
        return frame("result", body)
    return frame("error", {**body, "http_status": status})
