"""A background listener on one Redis pub/sub channel (the job store's cancel channel)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger(__name__)


def listen(
    client: redis.Redis, channel: str, callback: Callable[[str], None]
) -> Callable[[], None]:
    """Call `callback(message)` from a thread for each message on `channel`; returns stop()."""

    def on_message(message: dict) -> None:
        try:
            callback(message["data"].decode())
        except Exception:  # one bad callback must not end the listener
            log.exception("callback for %s failed", channel)

    def on_error(error: BaseException, pubsub: Any, thread: Any) -> None:
        # redis-py reconnects and subscribes again on the next read; pause so a Redis that is
        # away is not hammered. Messages published meanwhile are lost (pub/sub keeps none).
        log.warning("listener on %s: %s; reconnecting", channel, error)
        time.sleep(0.5)

    pubsub = client.pubsub()
    pubsub.subscribe(**{channel: on_message})
    # Return only once Redis confirmed: a message published after this returns is heard.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "subscribe":
            break
    thread = pubsub.run_in_thread(sleep_time=0.2, daemon=True, exception_handler=on_error)

    def stop() -> None:
        thread.stop()  # the thread closes the pubsub connection as it ends
        thread.join(timeout=2)

    return stop
