"""The job store's Lua scripts (lua/*.lua, each after lua/common.lua) and its reply decoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.commands.core import Script

LUA = Path(__file__).with_name("lua")
SCRIPTS = (
    "admit",
    "get",
    "cancel",
    "delete",
    "claim",
    "begin",
    "progress",
    "renew",
    "finish",
    "release",
    "due",
    "heartbeat",
    "workers",
    "reap_lock",
    "preview",
    "interrupt",
)
FINAL = frozenset({"succeeded", "failed", "cancelled"})
# Short-lived keys: each only has to outlive the request that reads it.
DONE_SECONDS = 60.0  # a job's "done" list (wait's BLPOP)
SYNC_KEEP_SECONDS = 60.0  # a finished sync job's record (its request reads it, then deletes it)
INLINE_SECONDS = 60.0  # a sync job's inline images


@dataclass(frozen=True)
class StoreSettings:
    """The store's knobs, from the server's configuration."""

    prefix: str  # REDIS_PREFIX, e.g. "t2i"; every key starts with f"{prefix}:"
    ttl_seconds: float  # JOB_TTL_SECONDS: finished jobs are kept this long
    max_finished: int  # MAX_STORED_JOBS: at most this many finished jobs are kept (oldest dropped)
    lease_seconds: float  # LEASE_SECONDS: a claim/renewal makes the lease last this long
    heartbeat_seconds: float  # HEARTBEAT_SECONDS: a worker is live while its beat is < 3x this old
    max_attempts: int  # JOB_MAX_ATTEMPTS
    delivery_seconds: float = 60.0  # an admitted job not claimed within this is re-sent


def load_scripts(client: redis.Redis) -> dict[str, Script]:
    """Every script, registered on `client` (redis-py loads each on its first call)."""
    common = (LUA / "common.lua").read_text()
    return {
        name: client.register_script(common + (LUA / f"{name}.lua").read_text()) for name in SCRIPTS
    }


def settings_args(settings: StoreSettings) -> list[str | int]:
    """ARGV[1..12] of every script, in the order lua/common.lua reads them."""
    ttl_ms = ms(settings.ttl_seconds)
    return [
        settings.prefix,
        ttl_ms,
        settings.max_finished,
        ms(settings.lease_seconds),
        ms(3 * settings.heartbeat_seconds),
        settings.max_attempts,
        ms(settings.delivery_seconds),
        f"results are kept for {settings.ttl_seconds:g} s (JOB_TTL_SECONDS)",
        f"only the last {settings.max_finished} finished jobs are kept (MAX_STORED_JOBS)",
        ms(DONE_SECONDS),
        ms(SYNC_KEEP_SECONDS),
        ms(INLINE_SECONDS),
    ]


def ms(seconds: float) -> int:
    """Milliseconds, at least 1."""
    return max(1, round(seconds * 1000))  # 0 ms would make PX/PEXPIRE fail


def text(value: bytes | str | None) -> str | None:
    """A reply's string, '' read as None (Lua cannot store nil in a hash)."""
    if isinstance(value, bytes):
        value = value.decode()
    return value or None


def _number(value: bytes | None, kind: type[int] | type[float]) -> Any:
    raw = text(value)
    return None if raw is None else kind(raw)


def decode_state(reply: list[Any] | None) -> dict | None:
    """A script's {HGETALL, waiting rank} as the job's state (see JobStore.get)."""
    if not reply:
        return None
    flat, rank = reply
    fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    state: dict[str, Any] = json.loads(fields["record"])
    status = text(fields["status"])
    error, result = text(fields["error"]), text(fields["result"])
    state.update(
        status=status,
        attempt=int(fields["attempt"]),  # the latest claim's fence token (releases included)
        released=int(fields["released"]),  # attempts given back: not counted against the cap
        step=int(fields["step"]),
        total=_number(fields["total"], int),
        position=rank if status == "queued" else None,
        batch_size=_number(fields["batch_size"], int),
        started_at=_number(fields["started_at"], float),
        finished_at=_number(fields["finished_at"], float),
        worker=text(fields["worker"]),
        error=None if error is None else json.loads(error),
        result=None if result is None else json.loads(result),
        preview_step=_number(fields.get("preview_step"), int),
        interrupted=text(fields.get("interrupted")),  # None, "interrupt" or "skip"
    )
    return state


def dumps(value: Any) -> str:
    """JSON for a hash field; None is stored as '' (read back as None)."""
    return "" if value is None else json.dumps(value, separators=(",", ":"))
