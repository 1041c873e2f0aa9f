"""Which process owns which unfinished jobs in JOBS_DIR, told apart by file locks.

Each engine holds an exclusive `flock` on `owners/<token>.lock` for as long as it runs, and
writes its token into the records of the jobs it accepts. The kernel drops the lock when the
process dies, however it dies (SIGKILL, the OOM killer), so "can I take its lock?" is an
exact test for "is that owner dead?", with no pid reuse to fool it. A graceful restart, where
the old worker still drains its queue beside the new one, therefore never runs a job twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import secrets
from pathlib import Path
from typing import IO


class JobOwners:
    """This process's lock in `folder/owners`, and the means to find the dead owners' ones."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "owners"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(8)
        self._mine: IO[str] | None = self._lock(self.token, create=True)
        if self._mine is None:  # a fresh random name: only a broken file system gets here
            raise OSError(f"cannot lock {self.folder / self.token}.lock")
        self._claimed: dict[str, IO[str]] = {}

    def alive(self, token: str | None) -> bool:
        """Whether `token`'s process still runs (ours does; an unknown one does not)."""
        if token == self.token or token in self._claimed:
            return True
        if not token:
            return False  # written before owners were recorded: nobody holds it
        held = self._lock(token)
        if held is None:
            return (self.folder / f"{token}.lock").exists()
        held.close()
        return False

    def claim_dead(self) -> list[str]:
        """Tokens of owners that died; their locks are held here until `forget` is called."""
        dead = []
        for path in self.folder.glob("*.lock"):
            token = path.stem
            if token == self.token or token in self._claimed:
                continue
            held = self._lock(token)
            if held is not None:  # its process is gone; holding the lock keeps others off
                self._claimed[token] = held
                dead.append(token)
        return dead

    def forget(self, token: str) -> None:
        """Drop a dead owner whose jobs have been taken over."""
        held = self._claimed.pop(token, None)
        with contextlib.suppress(OSError):
            (self.folder / f"{token}.lock").unlink()
        if held is not None:
            held.close()

    def release(self) -> None:
        """Give up this process's jobs (at a stop): the next process takes the unfinished ones."""
        for token in list(self._claimed):
            self.forget(token)
        if self._mine is not None:
            with contextlib.suppress(OSError):
                (self.folder / f"{self.token}.lock").unlink()
            self._mine.close()
            self._mine = None

    def _lock(self, token: str, create: bool = False) -> IO[str] | None:
        """The lock file of `token`, locked by us; None if another process holds it (or it is
        gone: another owner's file is never created here)."""
        try:
            handle = (self.folder / f"{token}.lock").open("a" if create else "r")
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle
