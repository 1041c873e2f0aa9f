"""Job state of the scale-out mode in Redis: admission, records, leases, heartbeats, cancels.

Celery only carries messages; every atomic step here is one Lua script (lua/*.lua, one round
trip), and lease and heartbeat times come from Redis' TIME. Keys (P = settings.prefix):
  P:job:<id>      hash: record (the admitted JSON, verbatim), model, keep, status, attempt,
                  released, step, total, seq, batch_size, started_at, finished_at, worker,
                  error, result (JSON), preview_step, interrupted; expires ttl after
                  finishing (a sync job's after 60 s)
  P:active        set: ids of admitted, unfinished jobs (the outstanding count)
  P:by_model      hash: model -> its unfinished jobs
  P:seq           counter: admission order
  P:waiting       zset: admitted, not begun jobs by admission order (positions)
  P:leases        zset: unfinished job -> lease end (ms, Redis time); due once past
  P:finished      zset: finished async job -> finish time (ms), for MAX_STORED_JOBS
  P:gone:<id>     string: why a job is gone; expires 10 x ttl after it went
  P:done:<id>     list: pushed when a job ends or is deleted (wait's BLPOP); expires in 60 s
  P:inline:<id>   list: a sync job's images; expires in 60 s
  P:preview:<id>  hash: the latest live preview (step, total, media_type, width, height, data)
                  of an unfinished job; deleted when it ends (live_store.py)
  P:workers       zset: worker -> last heartbeat (ms, Redis time)
  P:worker:<wid>  hash: info (JSON), capacity, retry_after, models (JSON); expires 3 x beat
  P:reap_lock     string: the worker that runs due() now (SET NX PX)
  P:cancel        pub/sub channel: ids of cancelled or deleted unfinished jobs
The client must be made with decode_responses=False (images are bytes), and its
socket_timeout, if any, must exceed the timeouts given to wait(). The scripts build key names
from the prefix, so every key must live on one Redis (no Redis Cluster).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from backend.distributed.store_pubsub import listen
from backend.distributed.store_scripts import (
    DONE_SECONDS,
    FINAL,
    StoreSettings,
    decode_state,
    dumps,
    load_scripts,
    ms,
    settings_args,
    text,
)
from backend.model.task_steps import planned_from_values

__all__ = ["Admission", "Claim", "JobStore", "StoreSettings"]


@dataclass(frozen=True)
class Admission:
    """What admit() decided, and where to send the job."""

    accepted: bool
    reason: str | None  # None | "full" | "no_workers"
    retry_after: int  # seconds (>= 1) when refused "full"; else 0
    queue: str  # f"{prefix}.m.{model}" if a live worker has the model loaded, else f"{prefix}.any"
    outstanding: int  # unfinished jobs after this call
    capacity: int  # sum of live workers' capacity


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one run of a job."""

    attempt: int  # the fence token for every later write of this run
    record: dict  # the job's record (as given to admit)


class JobStore:
    """Job state shared by API and worker processes, in one Redis."""

    def __init__(self, client: redis.Redis, settings: StoreSettings) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("JobStore needs a Redis client with decode_responses=False")
        self.client = client
        self.settings = settings
        self._scripts = load_scripts(client)
        self._settings = settings_args(settings)
        self._trimmed: list[dict] = []
        self._trimmed_lock = threading.Lock()

    def _run(self, name: str, *args: Any) -> Any:
        return self._scripts[name](args=[*self._settings, *args])

    def _key(self, *parts: str) -> str:
        return ":".join((self.settings.prefix, *parts))

    def _keep_trimmed(self, states: list) -> None:
        decoded = [state for state in map(decode_state, states) if state is not None]
        if decoded:
            with self._trimmed_lock:
                self._trimmed.extend(decoded)

    def trimmed(self) -> list[dict]:
        """States of jobs dropped for MAX_STORED_JOBS by this store's calls, since the last call."""
        # Trimming happens inside finish/cancel/claim; their callers delete the images here.
        with self._trimmed_lock:
            states, self._trimmed = self._trimmed, []
        return states

    # --- API side ---

    def admit(self, record: dict) -> Admission:
        """Admit a job if live workers have room, in one round trip; say where to route it."""
        # An id that is stored already raises redis.ResponseError (ids are random tokens).
        request = record.get("request") or {}
        steps = request.get("steps")
        if steps is not None:  # the steps it will run (img2img: strength of them; hires: both)
            steps = planned_from_values(steps, request.get("init_image"), request.get("hires"))
        keep = "1" if record.get("keep") else "0"
        reply = self._run(
            "admit",
            record["id"],
            record["model"],
            keep,
            json.dumps(record),
            "" if steps is None else steps,
        )
        accepted, reason, retry_after, routed, outstanding, capacity = reply
        prefix = self.settings.prefix
        return Admission(
            accepted=bool(accepted),
            reason=text(reason),
            retry_after=int(retry_after),
            queue=f"{prefix}.m.{record['model']}" if routed else f"{prefix}.any",
            outstanding=int(outstanding),
            capacity=int(capacity),
        )

    def get(self, job_id: str) -> dict | None:
        """The job's record and state (status, attempt, step, position, ...); None if unknown."""
        return decode_state(self._run("get", job_id))

    def gone_reason(self, job_id: str) -> str | None:
        """Why a job that existed is gone; None if it still exists or never did."""
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(self._key("job", job_id)).get(self._key("gone", job_id))
        exists, reason = pipe.execute()
        return None if exists else text(reason)

    def cancel(self, job_id: str) -> dict | None:
        """End an unfinished job as cancelled and tell its worker; a final one is left as is."""
        reply = self._run("cancel", job_id)
        if reply is None:
            return None
        self._keep_trimmed(reply[1])
        return decode_state(reply[0])

    def delete(self, job_id: str, reason: str) -> dict | None:
        """Forget a job now (its gone_reason is `reason`); its last state, or None if unknown."""
        return decode_state(self._run("delete", job_id, reason))

    def wait(self, job_id: str, timeout: float) -> bool:
        """Block until the job is final or gone: True, or False after `timeout` seconds."""
        key = self._key("job", job_id)
        if text(self.client.hget(key, "status")) in FINAL | {None}:
            return True  # ended before this call: its push may be gone already
        done = self._key("done", job_id)
        if timeout > 0 and self.client.blpop([done], timeout=timeout) is not None:
            # Put it back for any other waiter on the same job (BLPOP deleted the emptied list,
            # so its expiry is set again).
            pipe = self.client.pipeline(transaction=True)
            pipe.rpush(done, "woken").pexpire(done, ms(DONE_SECONDS)).execute()
            return True
        return text(self.client.hget(key, "status")) in FINAL | {None}

    def outstanding_by_model(self) -> dict[str, int]:
        """Unfinished admitted jobs per model."""
        counts = self.client.hgetall(self._key("by_model"))
        return {name.decode(): int(count) for name, count in counts.items()}

    def workers(self) -> list[dict]:
        """The live workers' latest heartbeat info, with "id" and "age" (seconds since it)."""
        listing = []
        for worker_id, info, age_ms in self._run("workers"):
            listing.append({**json.loads(info), "id": worker_id.decode(), "age": age_ms / 1000})
        return listing

    def take_inline(self, job_id: str) -> list[bytes] | None:
        """A sync job's inline images, read and deleted; None if there are none."""
        key = self._key("inline", job_id)
        pipe = self.client.pipeline(transaction=True)
        images, _ = pipe.lrange(key, 0, -1).delete(key).execute()
        return images or None

    # --- worker side ---

    def claim(self, job_id: str, worker_id: str) -> Claim | None:
        """Take a delivered job for one run; None: drop the message (or the cap failed it)."""
        reply = self._run("claim", job_id, worker_id)
        if reply is None or reply[0] == 0:
            return None
        self._keep_trimmed(reply[-1])
        if reply[0] == -1:
            return None  # JOB_MAX_ATTEMPTS reached: the job is failed
        return Claim(attempt=int(reply[0]), record=json.loads(reply[1]))

    def begin(
        self, job_id: str, worker_id: str, attempt: int, batch_size: int, ago: float = 0.0
    ) -> bool:
        """Mark our claimed job running since `ago` seconds; False if it is not ours any more
        or final."""
        return bool(self._run("begin", job_id, worker_id, attempt, batch_size, ago))

    def progress(self, job_id: str, worker_id: str, attempt: int, step: int, total: int) -> int:
        """Write step/total (and extend the lease): 0 (falsy): stop, the job is not ours or
        final; 1: go on; 2: an interrupt was asked, 3: a skip (see `live_store`)."""
        return int(self._run("progress", job_id, worker_id, attempt, step, total))

    def renew(self, worker_id: str, runs: dict[str, int]) -> list[str]:
        """Extend the leases of this worker's runs (id -> attempt); the ids no longer ours."""
        if not runs:
            return []
        pairs = [value for item in runs.items() for value in item]
        return [job_id.decode() for job_id in self._run("renew", worker_id, *pairs)]

    def finish(  # noqa: PLR0917 (the positional order is the interface workers code against)
        self,
        job_id: str,
        worker_id: str,
        attempt: int,
        status: str,
        result: dict | None,
        error: dict | None,
        inline: list[bytes] | None = None,
    ) -> bool:
        """End a run's job (fenced by attempt); trimmed jobs go to trimmed(). False if stale."""
        if status not in FINAL:
            raise ValueError(f"not a final status: {status!r}")
        args = [job_id, worker_id, attempt, status, dumps(result), dumps(error), *(inline or [])]
        reply = self._run("finish", *args)
        if reply[0] != 1:
            return False
        self._keep_trimmed(reply[1])
        return True

    def release(self, job_id: str, worker_id: str, attempt: int) -> bool:
        """Give back a claimed job not begun, due for re-sending now and not counted."""
        return bool(self._run("release", job_id, worker_id, attempt))

    def heartbeat(self, worker_id: str, info: dict) -> None:
        """Say this worker is live, with its capacity, retry_after and loaded models."""
        capacity, retry_after = int(info["capacity"]), int(info["retry_after"])
        models = json.dumps(list(info["models"]))
        self._run("heartbeat", worker_id, json.dumps(info), capacity, retry_after, models)

    def forget_worker(self, worker_id: str) -> None:
        """Drop this worker's heartbeat now (it stops cleanly)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self._key("workers"), worker_id).delete(self._key("worker", worker_id)).execute()

    def reap_lock(self, worker_id: str, seconds: float) -> bool:
        """Whether this worker may run due() now; it keeps the lock while it renews it."""
        return bool(self._run("reap_lock", worker_id, ms(seconds)))

    def due(self, limit: int = 100) -> list[dict]:
        """Requeue jobs whose lease ran out; their states, for re-sending to their model's queue."""
        return [state for state in map(decode_state, self._run("due", limit)) if state]

    def subscribe_cancels(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(job_id)` for each cancel published, from a thread; returns stop()."""
        # Pub/sub can drop messages: workers also learn from renew() and progress().
        return listen(self.client, self._key("cancel"), callback)
