"""`make bench`'s scale-out section: worker processes behind a gunicorn API, on a real Redis.

    python -m bench.scale_out [--model bench-sd-turbo] [--size N] [--steps 1] [--smoke]

Measures (part of `python -m bench.run`; this command runs the section alone):
1. images/s with 1, then 2 worker processes, each given the same torch threads (half the
   cores, as each of two GPUs would be one device) - target: 2 workers >= 1.8 x one;
2. the latency the queue hop adds: p50 and p99 of a fast request (demo model, 64x64, 1 step)
   through the celery mode, minus the same through the single-process server with the same
   threads - target: p50 <= 10 ms added;
3. recovery: seconds from SIGKILL of the worker running a job to that job succeeding on the
   other one, with the default LEASE_SECONDS and HEARTBEAT_SECONDS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from bench.cluster import Cluster, wait_job
from bench.load import post, throughput
from bench.redis_server import RedisMissingError, RedisServer
from bench.server import Server, server_env

FAST = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1, "seed": 1}
SLOW = {"prompt": "a lighthouse", "width": 128, "height": 128, "steps": 40, "seed": 2}
CLIENTS = 4


def measure(  # noqa: PLR0917 (bench.run passes what it measured with)
    folder: Path, demo: Path, body: dict, settings: dict, work: Path, images: int, hops: int
) -> dict[str, Any]:
    """Every scale-out figure; {"skipped": why} where no redis-server is installed."""
    cores = os.cpu_count() or 1
    threads = max(1, cores // 2)
    settings = {**settings, "OMP_NUM_THREADS": threads}
    try:
        redis = RedisServer(work)
    except RedisMissingError as missing:
        _say(f"scale-out section skipped: {missing}")
        return {"skipped": str(missing)}
    try:
        demo_settings = {**settings, "DEFAULT_MODEL": demo}
        local = _local_hops(demo_settings, work, hops)
        with _cluster(demo_settings, redis.url, work / "demo", workers=2) as cluster:
            celery = _hops(cluster.apis[0].url, hops)
            recovery = _recovery(cluster)
        with _cluster({**settings, "DEFAULT_MODEL": folder}, redis.url, work / "model") as cluster:
            levels = [_level(cluster, body, images)]
            cluster.add_worker()
            levels.append(_level(cluster, body, images))
    finally:
        redis.stop()
    hop = {
        f"{mode}_{q}": value
        for mode, v in (("local", local), ("celery", celery))
        for q, value in v.items()
    }
    hop.update({f"added_{q}": celery[q] - local[q] for q in ("p50_ms", "p99_ms")})
    _say(f"queue hop: p50 +{hop['added_p50_ms']:.1f} ms, p99 +{hop['added_p99_ms']:.1f} ms")
    return {
        "cores": cores,
        "threads_per_worker": threads,
        "throughput": levels,
        "scaling": levels[1]["images_per_s"] / levels[0]["images_per_s"],
        "hop": hop,
        "recovery": recovery,
    }


@contextmanager
def _cluster(settings: dict, redis_url: str, folder: Path, workers: int = 1) -> Iterator[Cluster]:
    """A cluster of one API and `workers` workers, its processes ended on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(settings, redis_url, folder)
    try:
        for _ in range(workers):
            cluster.add_worker()
        cluster.add_api()
        _wait_devices(cluster, workers)
        yield cluster
    finally:
        cluster.stop()


def _wait_devices(cluster: Cluster, count: int, timeout: float = 60.0) -> None:
    """Until the API's /health lists `count` ready workers (their heartbeats lag)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = requests.get(f"{cluster.apis[0].url}/health", timeout=10).json()
        ready = [d for d in health.get("devices", []) if d["status"] == "healthy"]
        if len(ready) == len(health.get("devices", [])) == count:
            return
        time.sleep(0.1)
    raise SystemExit(f"the API never saw {count} workers: {health}")


def _quantiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000}


def _hops(url: str, count: int) -> dict[str, float]:
    """p50/p99 of `count` sequential fast requests (after two warm-ups)."""
    session = requests.Session()
    for _ in range(2):
        post(session, url, FAST)
    timings = [post(session, url, FAST) for _ in range(count)]
    failed = {status for status, _ in timings if status != 200}
    if failed:
        raise SystemExit(f"fast requests failed with {sorted(failed)}")
    return _quantiles([seconds for _, seconds in timings])


def _local_hops(settings: dict, work: Path, count: int) -> dict[str, float]:
    server = Server(server_env({**settings, "QUEUE_BACKEND": "local"}), work / "local.log")
    try:
        server.seconds_until_healthy(timeout=900)
        return _hops(server.url, count)
    finally:
        server.stop()


def _level(cluster: Cluster, body: dict, images: int) -> dict[str, float]:
    workers = len(cluster.live_workers())
    _wait_devices(cluster, workers)
    post(requests.Session(), cluster.apis[0].url, body)  # warm-up
    level = throughput(cluster.apis[0].url, body, CLIENTS, images)
    _say(f"{workers} worker(s), {CLIENTS} clients: {level['images_per_s']:.2f} images/s")
    return {"workers": workers, **level}


def _recovery(cluster: Cluster) -> dict[str, float]:
    """Kill the worker running a job; seconds until the job succeeds on the other."""
    api = cluster.apis[0].url
    run = post(requests.Session(), api, SLOW)[1]  # how long the job takes undisturbed
    job = requests.post(f"{api}/jobs", json=SLOW, timeout=10).json()
    victim = None
    while victim is None:
        victim = cluster.worker_of(job["id"])
        time.sleep(0.01)
    killed = time.perf_counter()
    victim.kill()
    done = wait_job(api, job["id"], {"succeeded", "failed"}, timeout=300)
    seconds = time.perf_counter() - killed
    if done["status"] != "succeeded":
        raise SystemExit(f"the killed worker's job ended {done['status']}: {done}")
    _say(f"SIGKILL mid-job: finished elsewhere {seconds:.1f} s later (the run alone: {run:.1f} s)")
    return {"run_s": run, "kill_to_done_s": seconds, "attempt": done["attempt"]}


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the section alone and print its figures as JSON."""
    from backend.config import resolve_path
    from bench.run import add_model_arguments, server_settings, setup

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--images", type=int, default=16, help="per worker count")
    parser.add_argument("--hops", type=int, default=100, help="fast requests per mode")
    parser.add_argument("--smoke", action="store_true", help="demo model, tiny counts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.size, args.images, args.hops = "demo", 64, 4, 10
    device, _, folder, body = setup(args)
    demo = resolve_path(args.models_dir) / "demo"
    work = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
    figures = measure(
        folder, demo, body, server_settings(folder, device), work, args.images, args.hops
    )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
