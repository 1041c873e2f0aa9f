"""Jobs on disk (JOBS_DIR): a finished job's state and images outlive a restart of the server.

One `<id>.json` per job (its `JobRecord`) and one `<id>.<k>.<ext>` per image, each written
to a temporary name and renamed, so a reader never sees half a file. The record is written when
the job is accepted (fsynced: the client is told 202), when a run begins (the attempt count),
and when it ends: images first, then the record, each fsynced, then the folder, and only then is
the final state shown to anyone. A record that is not final belongs to the process named in it
(`job_owners.py`); once that process is dead, the next one runs the job again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from backend.model.atomic_write import sync_folder, write_atomically
from backend.model.job import Job
from backend.model.job_owners import JobOwners
from backend.model.job_record import JobRecord, JobStatus
from backend.model.types import EncodedImage

log = logging.getLogger(__name__)

# What `secrets.token_urlsafe(16)` makes; anything else never reaches the file system.
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


class JobFiles:
    """Reads and writes job records and images in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.owners = JobOwners(folder)
        # Records are written under one lock, and a final one is never replaced by an earlier
        # state (the accepting thread may save after the device already finished the job).
        self._lock = threading.Lock()

    def save(self, job: Job, durable: bool = False) -> None:
        """Write the job's current, unfinished state. Never raises."""
        with self._lock:
            if job.final_saved:
                return
            try:
                self._write_record(job.id, job.record().to_dict(), durable)
            except OSError as error:  # a full disk must not fail the job itself
                log.warning("could not save job %s to %s: %s", job.id, self.folder, error)

    def save_final(self, job: Job, final: JobRecord, images: list[EncodedImage]) -> None:
        """Make a final state durable: the images, then the record, then the folder entry."""
        record = final.to_dict()
        with self._lock:
            try:
                record["images"] = [
                    self._write_image(job.id, index, image) for index, image in enumerate(images)
                ]
                self._write_record(job.id, record, durable=True)
            except OSError as error:  # the job still ends; it is just not kept across restarts
                log.warning("could not save job %s to %s: %s", job.id, self.folder, error)
            job.final_saved = True

    def unfinished(self) -> list[dict[str, Any]]:
        """The records of unfinished jobs, oldest first."""
        records = []
        for path in self.folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                if not JobStatus(record["status"]).final:
                    records.append(record)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # unreadable: `sweep` deals with it
        return sorted(records, key=lambda record: record.get("created_at", 0))

    def _write_record(self, job_id: str, record: dict[str, Any], durable: bool) -> None:
        record["process"] = self.owners.token  # who runs it, while it is unfinished
        write_atomically(self.folder / f"{job_id}.json", json.dumps(record).encode(), durable)
        if durable:  # the rename itself is durable only once the folder is
            sync_folder(self.folder)

    def load(self, job_id: str) -> Job | None:
        """The job saved under `job_id`, or None."""
        if not JOB_ID.match(job_id):
            return None
        try:
            record = json.loads((self.folder / f"{job_id}.json").read_text())
            images = [
                EncodedImage(
                    self._image(job_id, image["file"]).read_bytes(),
                    image["media_type"],
                    image["seed"],
                )
                for image in record.get("images", [])
            ]
            return Job.restore(JobRecord.from_dict(record), images)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("job %s in %s is unreadable: %s", job_id, self.folder, error)
            return None

    def delete(self, job_id: str) -> None:
        """Remove the job's record and images, if any."""
        if not JOB_ID.match(job_id):
            return
        record = self.folder / f"{job_id}.json"
        try:
            images = [image["file"] for image in json.loads(record.read_text()).get("images", [])]
        except FileNotFoundError:
            return  # never saved, or already gone: the common case, and one failed open
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            images = [path.name for path in self.folder.glob(f"{job_id}.*")]
        for name in images:
            with contextlib.suppress(ValueError):
                self._image(job_id, name).unlink(missing_ok=True)
        record.unlink(missing_ok=True)

    def _image(self, job_id: str, name: str) -> Path:
        # Only this job's own image names, never a path out of the folder, whatever a record says.
        if not re.fullmatch(rf"{re.escape(job_id)}\.\d+\.[a-z]+", name):
            raise ValueError(f"not an image of job {job_id}: {name!r}")
        return self.folder / name

    def sweep(self, ttl: float, keep: int) -> None:
        """At start-up: drop records finished more than `ttl` ago, and all but the newest `keep`
        finished ones."""
        finished: list[tuple[float, str]] = []
        now = time.time()
        for path in self.folder.glob("*.json"):
            try:
                record = json.loads(path.read_text())
                ended = record["finished_at"] or path.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError):
                ended, record = 0.0, {}  # unreadable: treated as long expired
            if now - ended >= ttl:
                self.delete(path.stem)
            elif record.get("finished_at"):  # unfinished jobs are not counted: they will run
                finished.append((ended, path.stem))
        for _, job_id in sorted(finished, reverse=True)[keep:]:
            self.delete(job_id)
        for path in self.folder.glob("*.tmp"):  # left by a crash mid-write
            path.unlink(missing_ok=True)

    def _write_image(self, job_id: str, index: int, image: EncodedImage) -> dict:
        name = f"{job_id}.{index}.{image.extension}"
        # Durable, but the folder is synced once, by the record written after the images.
        write_atomically(self.folder / name, image.data, durable=True)
        return {"file": name, "media_type": image.media_type, "seed": image.seed}
