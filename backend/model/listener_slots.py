"""Bounds on the event streams open at once: in all, and per job (each holds an HTTP thread)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable


class ListenerSlots:
    """Counts open streams; `take` refuses one beyond `total` in all or `per_job` on a job."""

    def __init__(self, total: int, per_job: int) -> None:
        self.total = total
        self.per_job = per_job
        self._lock = threading.Lock()
        self._by_job: Counter[str] = Counter()

    @property
    def open(self) -> int:
        """Streams open now."""
        with self._lock:
            return sum(self._by_job.values())

    def take(self, key: str) -> Callable[[], None] | None:
        """A slot for a stream on `key` (a job id), as the function that gives it back (safe to
        call twice); None when a bound is reached."""
        with self._lock:
            if sum(self._by_job.values()) >= self.total or self._by_job[key] >= self.per_job:
                return None
            self._by_job[key] += 1
        given_back = threading.Event()

        def give_back() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                self._by_job[key] -= 1
                if self._by_job[key] <= 0:
                    del self._by_job[key]

        return give_back
