"""The scale-out mode's Redis: the client, the job store's settings, and Redis errors as 503s."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import redis

from backend.config import Settings
from backend.distributed.store import StoreSettings
from backend.model.errors import ModelUnavailableError

log = logging.getLogger(__name__)

WAIT_SLICE_SECONDS = 5.0  # a sync wait re-checks Redis this often (a lost Redis shows fast)


def store_settings(settings: Settings) -> StoreSettings:
    """The job store's settings, derived from the server's."""
    serving, scale = settings.serving, settings.scale_out
    return StoreSettings(
        prefix=scale.redis_prefix,
        ttl_seconds=serving.job_ttl_seconds,
        max_finished=serving.max_stored_jobs,
        lease_seconds=scale.lease_seconds,
        heartbeat_seconds=scale.heartbeat_seconds,
        max_attempts=serving.job_max_attempts,
    )


def redis_client(settings: Settings, connections: int) -> redis.Redis:
    """A client for BROKER_URL whose calls fail within seconds when Redis is away."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.scale_out.broker_url,
        max_connections=connections,
        timeout=10,  # waiting for a free connection
        socket_connect_timeout=3,
        socket_timeout=WAIT_SLICE_SECONDS + 5,  # longer than any blocking wait we make
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """A Redis that does not answer is a 503 for the client, never a 500."""
    try:
        yield
    except redis.RedisError as error:
        log.error("Redis error: %s", error)
        raise ModelUnavailableError(
            "The job store (Redis) does not answer; retry shortly."
        ) from None


def redis_problem(settings: Settings, error: Exception) -> str:
    """Why /health fails while Redis does not answer, naming it without its password."""
    url = settings.scale_out.broker_url
    where = url.split("@")[-1]  # never the password
    return f"Redis at {where} does not answer ({type(error).__name__})."
