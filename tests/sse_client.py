"""A small Server-Sent Events reader for the tests: from bytes as they arrive, to events."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    """One event as a client sees it; `comment` for a `:` line (a heartbeat)."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    retry: int | None = None
    comment: str | None = None


def read_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """The events (and heartbeat comments) in a stream of byte chunks, as each completes."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            yield _parse(block.decode())


def _parse(block: str) -> Event:
    event = Event()
    for line in block.split("\n"):
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            event.comment = value
        elif name == "id":
            event.id = value
        elif name == "event":
            event.event = value
        elif name == "data":
            assert event.data is None, "one data line per event (one-line JSON)"
            event.data = json.loads(value)
        elif name == "retry":
            event.retry = int(value)
    return event


def named(events: Iterable[Event]) -> list[Event]:
    """The events that have a name (no heartbeats, no retry hints)."""
    return [event for event in events if event.event is not None]
