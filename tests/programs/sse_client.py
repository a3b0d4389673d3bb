"""A small Server-Sent Events parser over an httpx streaming response (the tests' real client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Message:
    event: str
    data: Any
    id: str | None = None


def messages(response: httpx.Response) -> Iterator[Message]:
    """Each SSE message of ``response`` as it arrives (comments skipped)."""
    event, data, event_id = "message", [], None
    for line in response.iter_lines():
        if line == "":
            if data:
                yield Message(event, json.loads("\n".join(data)), event_id)
            event, data, event_id = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value
    if data:
        yield Message(event, json.loads("\n".join(data)), event_id)
