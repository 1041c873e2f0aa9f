"""A real redis-server for tests, on a free loopback port, ended by its pid.

Use the fixtures by importing them into a test module:
    from tests.redis_server import redis_client, redis_server  # noqa: F401
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.redis_server import RedisMissingError, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session."""
    with tempfile.TemporaryDirectory(prefix="t2i-redis-") as folder:
        try:
            server = RedisServer(Path(folder))
        except RedisMissingError as missing:
            pytest.skip(str(missing))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A fresh client; tests keep apart by a unique key prefix (see `unique_prefix`)."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


def unique_prefix() -> str:
    """A key prefix no other test uses (the server is shared, so nothing is flushed)."""
    return f"test{secrets.token_hex(4)}"
