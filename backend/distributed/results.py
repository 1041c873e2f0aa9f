"""Images of finished jobs in RESULTS_DIR, a folder every API process and worker shares.

Images stay out of Redis (a thousand kept jobs of four 1.5 MB images would be gigabytes of
RAM). Each attempt writes its own names, `<id>.<attempt>.<k>.<ext>`, each to a temporary name,
fsynced and renamed, before its result is recorded: a paused worker that wakes up late cannot
overwrite the images of the attempt that replaced it, and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

from backend.model.atomic_write import sync_folder, write_atomically
from backend.model.types import EncodedImage

_NAME = re.compile(r"^[A-Za-z0-9_-]{22}\.\d+\.\d+\.[a-z]+$")


class ResultFiles:
    """Writes, reads and deletes the image files of finished jobs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def save(self, job_id: str, attempt: int, images: list[EncodedImage]) -> list[dict[str, Any]]:
        """Write `images` durably; their descriptions, for the job's result."""
        described = []
        for index, image in enumerate(images):
            name = f"{job_id}.{attempt}.{index}.{image.extension}"
            write_atomically(self.folder / name, image.data)
            described.append({"file": name, "media_type": image.media_type, "seed": image.seed})
        sync_folder(self.folder)
        return described

    def load(self, files: list[dict[str, Any]]) -> list[EncodedImage]:
        """The images `save` described (OSError if one is missing)."""
        return [
            EncodedImage(self._path(each["file"]).read_bytes(), each["media_type"], each["seed"])
            for each in files
        ]

    def delete(self, files: list[dict[str, Any]]) -> None:
        """Remove the described files, if they are still there."""
        for each in files:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                self._path(each["file"]).unlink(missing_ok=True)

    def delete_jobs(self, states: list[dict[str, Any]]) -> None:
        """Remove the files of jobs the store dropped (JobStore.trimmed(): MAX_STORED_JOBS)."""
        for state in states:
            self.delete((state.get("result") or {}).get("files", []))

    def sweep(self, older_than: float) -> int:
        """Delete files (and crash leftovers) older than `older_than` seconds: their jobs'
        records have expired in Redis. Returns how many went."""
        removed = 0
        cutoff = time.time() - older_than
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if (
                    _NAME.match(path.name) or path.suffix == ".tmp"
                ) and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def _path(self, name: str) -> Path:
        # Only names this module makes, never a path out of the folder, whatever a record says.
        if not _NAME.match(name):
            raise ValueError(f"not a result file name: {name!r}")
        return self.folder / name
