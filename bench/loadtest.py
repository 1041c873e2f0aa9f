"""A bounded load test against the real gunicorn server with the demo model.

    python -m bench.loadtest [--clients 16] [--duration 30] [--queue 4] [--rate-limit 10/second]

N clients (real HTTP, one session each) send generations for a fixed time, one in five through
the jobs API (submit, poll, fetch), while a prober reads /health. It passes when every answer is
200/202, 503 (busy, with Retry-After) or 429 (rate limited), never a 500 or a dropped connection;
when every accepted job succeeds; when refusals stay fast (p99 under --max-reject-ms); and when
/health stays fast (p99 under --max-health-ms); and when the worker's memory does not grow
between the first and the last third of the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from bench.server import Server, server_env

BODY = {"prompt": "a lighthouse in a storm", "width": 128, "height": 128, "steps": 4}
ACCEPTED, REFUSED = {200, 202}, {503, 429}


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []  # dropped connections, timeouts, bad answers
        self.ok_ms: list[float] = []
        self.refused_ms: list[float] = []
        self.health_ms: list[float] = []
        self.jobs_failed: list[str] = []
        self.images = 0

    def record(self, status: int, milliseconds: float) -> None:
        """Count one answer to a generation."""
        with self.lock:
            self.statuses[status] += 1
            if status in REFUSED:
                self.refused_ms.append(milliseconds)
            elif status in ACCEPTED:
                self.ok_ms.append(milliseconds)


def client(url: str, index: int, until: float, tally: Tally) -> None:
    """One user: generate, again and again, until the time is up."""
    session = requests.Session()
    sent = 0
    while time.monotonic() < until:
        sent += 1
        body = {**BODY, "seed": index * 100_000 + sent}
        try:
            if sent % 5 == 0:
                _job(session, url, body, tally)
            else:
                _generate(session, url, body, tally)
        except requests.RequestException as error:
            with tally.lock:
                tally.errors.append(f"{type(error).__name__}: {error}")


def _generate(session: requests.Session, url: str, body: dict, tally: Tally) -> None:
    started = time.perf_counter()
    response = session.post(f"{url}/image/generate", json=body, timeout=120)
    milliseconds = (time.perf_counter() - started) * 1000
    tally.record(response.status_code, milliseconds)
    _check(response, tally)
    if response.status_code == 200:
        with tally.lock:
            tally.images += 1
    elif response.status_code in REFUSED:
        time.sleep(0.05)  # a polite client backs off a little (less than Retry-After asks)


def _job(session: requests.Session, url: str, body: dict, tally: Tally) -> None:
    started = time.perf_counter()
    response = session.post(f"{url}/jobs", json=body, timeout=30)
    tally.record(response.status_code, (time.perf_counter() - started) * 1000)
    _check(response, tally)
    if response.status_code != 202:
        return
    location = url + response.headers["Location"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = session.get(location, timeout=30).json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    image = session.get(f"{location}/image", timeout=30)
    with tally.lock:
        if state["status"] != "succeeded" or image.status_code != 200:
            tally.jobs_failed.append(f"{state['status']}: {state.get('error')}")
        else:
            tally.images += 1


def _check(response: requests.Response, tally: Tally) -> None:
    problem = None
    if response.status_code not in ACCEPTED | REFUSED:
        problem = f"HTTP {response.status_code}: {response.text[:200]}"
    elif response.status_code in REFUSED and "Retry-After" not in response.headers:
        problem = f"HTTP {response.status_code} without Retry-After"
    if problem:
        with tally.lock:
            tally.errors.append(problem)


def prober(url: str, until: float, tally: Tally) -> None:
    """Liveness and readiness, read while the device is saturated."""
    session = requests.Session()
    while time.monotonic() < until:
        started = time.perf_counter()
        try:
            status = session.get(f"{url}/health", timeout=10).status_code
            if status != 200:
                tally.errors.append(f"/health answered {status}")
        except requests.RequestException as error:
            tally.errors.append(f"/health: {error}")
        tally.health_ms.append((time.perf_counter() - started) * 1000)
        time.sleep(0.1)


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile (0-1) of `values`, 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, load it, stop it; return the figures."""
    settings = {
        "DEFAULT_MODEL": "demo",
        "DEVICE": "cpu",
        "MAX_QUEUE_SIZE": args.queue,
        "MAX_BATCH_SIZE": args.batch,
        "RATE_LIMIT": args.rate_limit or "",
        "API_KEYS": "",
        "LOG_LEVEL": "warning",
        "HTTP_THREADS": max(32, args.clients * 2),
        "GRACEFUL_TIMEOUT": 60,
    }
    folder = Path(tempfile.mkdtemp(prefix="loadtest-"))
    settings["JOBS_DIR"] = str(folder / "jobs")
    log = folder / "server.log"
    server = Server(server_env(settings), log)
    tally = Tally()
    memory: list[int] = []
    try:
        server.seconds_until_healthy()
        requests.post(f"{server.url}/image/generate", json=BODY, timeout=120)  # warm up
        started = time.monotonic()
        until = started + args.duration
        threads = [
            threading.Thread(target=client, args=(server.url, i, until, tally))
            for i in range(args.clients)
        ]
        threads.append(threading.Thread(target=prober, args=(server.url, until, tally)))
        for thread in threads:
            thread.start()
        while time.monotonic() < until:
            memory.append(server.rss_bytes())
            time.sleep(0.5)
        for thread in threads:
            thread.join(timeout=180)
        elapsed = time.monotonic() - started
    finally:
        exit_code = server.stop()
    third = max(1, len(memory) // 3)
    early, late = statistics.median(memory[:third]), statistics.median(memory[-third:])
    return {
        "clients": args.clients,
        "duration_s": round(elapsed, 1),
        "queue": args.queue,
        "batch": args.batch,
        "rate_limit": args.rate_limit,
        "statuses": dict(sorted(tally.statuses.items())),
        "images": tally.images,
        "images_per_s": round(tally.images / elapsed, 2),
        "ok_p50_ms": round(percentile(tally.ok_ms, 0.5), 1),
        "ok_p99_ms": round(percentile(tally.ok_ms, 0.99), 1),
        "refused_p50_ms": round(percentile(tally.refused_ms, 0.5), 1),
        "refused_p99_ms": round(percentile(tally.refused_ms, 0.99), 1),
        "health_p50_ms": round(percentile(tally.health_ms, 0.5), 1),
        "health_p99_ms": round(percentile(tally.health_ms, 0.99), 1),
        "rss_early_mb": round(early / 2**20, 1),
        "rss_late_mb": round(late / 2**20, 1),
        "rss_growth": round(late / early - 1, 3),
        "errors": tally.errors[:20],
        "jobs_failed": tally.jobs_failed[:20],
        "server_exit_code": exit_code,
        "server_log": str(log),
    }


def verdict(
    figures: dict[str, Any], max_reject_ms: float, max_health_ms: float, max_growth: float
) -> list[str]:
    """The checks that failed (empty: passed)."""
    failed = []
    if figures["health_p99_ms"] > max_health_ms:
        failed.append(f"/health p99 {figures['health_p99_ms']} ms > {max_health_ms} ms")
    if figures["errors"]:
        failed.append(f"{len(figures['errors'])}+ bad answers or dropped connections")
    if figures["jobs_failed"]:
        failed.append("accepted jobs failed")
    if figures["refused_p99_ms"] > max_reject_ms:
        failed.append(f"refusals p99 {figures['refused_p99_ms']} ms > {max_reject_ms} ms")
    if figures["rss_growth"] > max_growth:
        failed.append(f"memory grew {figures['rss_growth']:.1%} > {max_growth:.0%}")
    if figures["server_exit_code"] != 0:
        failed.append(f"the server exited with {figures['server_exit_code']} on SIGTERM")
    if not figures["images"]:
        failed.append("no image was generated")
    return failed


def main() -> None:
    """Run the load test, print its figures, exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=30, help="seconds of load")
    parser.add_argument("--queue", type=int, default=4, help="MAX_QUEUE_SIZE")
    parser.add_argument("--batch", type=int, default=4, help="MAX_BATCH_SIZE")
    parser.add_argument("--rate-limit", default=None, help="RATE_LIMIT, e.g. 10/second")
    parser.add_argument("--max-reject-ms", type=float, default=50, help="refusals' p99")
    parser.add_argument("--max-health-ms", type=float, default=100, help="/health's p99")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth")
    args = parser.parse_args()
    figures = run(args)
    failed = verdict(figures, args.max_reject_ms, args.max_health_ms, args.max_growth)
    print(json.dumps(figures, indent=2))
    print("PASS" if not failed else "FAIL: " + "; ".join(failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
