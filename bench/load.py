"""Requests the benchmarks send: one timed POST, and concurrent clients for a throughput."""

from __future__ import annotations

import math
import statistics
import threading
import time

import requests


def post(session: requests.Session, url: str, body: dict) -> tuple[int, float]:
    """POST /image/generate: the status code and the seconds it took."""
    started = time.perf_counter()
    response = session.post(f"{url}/image/generate", json=body, timeout=900)
    return response.status_code, time.perf_counter() - started


def throughput(url: str, body: dict, clients: int, images: int) -> dict[str, float]:
    """Images per second with `clients` concurrent clients sending `images` in all."""
    per_client = max(1, math.ceil(images / clients))
    latencies: list[float] = []
    failures: list[int] = []

    def client(index: int) -> None:
        session = requests.Session()
        for k in range(per_client):
            status, seconds = post(session, url, {**body, "seed": index * 1000 + k})
            (latencies if status == 200 else failures).append(seconds if status == 200 else status)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} requests failed with {sorted(set(failures))}")
    return {
        "clients": clients,
        "images_per_s": len(latencies) / elapsed,
        "p50_s": statistics.median(latencies),
    }
