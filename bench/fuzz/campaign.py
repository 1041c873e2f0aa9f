"""One campaign: start the server, schemathesis, then hostile requests, then a normal generation."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.fuzz.attack import Attack
from bench.fuzz.conformance import Document
from bench.fuzz.report import Failure, Report
from bench.fuzz.schema import run_schemathesis
from bench.fuzz.server import AUTH, fuzz_server

SCHEMATHESIS_SHARE = 0.5  # of the time budget; the hostile requests get the rest
FINAL_BODY = {"prompt": "a lighthouse on a cliff at dusk", "width": 128, "height": 64, "steps": 2}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Outcome:
    """What a campaign found, and what it did."""

    report: Report
    seconds: float
    hostile_requests: int
    final_ok: bool
    server_log: Path


def final_generation(url: str, report: Report) -> bool:
    """A normal POST /image/generate must still answer 200 with a PNG."""
    headers = {"Content-Type": b"application/json", **{k: v.encode() for k, v in AUTH.items()}}
    body = json.dumps(FINAL_BODY).encode()
    failure = Failure("final", "POST /image/generate", "the server no longer generates", "POST",
                      f"{url}/image/generate", headers, body, None)  # fmt: skip
    try:
        response = requests.post(failure.url, data=failure.body, headers=headers, timeout=120)
    except requests.RequestException as error:
        report.count("final", failure.endpoint, type(error).__name__)
        failure.problem += f": no answer: {error}"
        report.fail(failure)
        return False
    report.count("final", failure.endpoint, response.status_code)
    if response.status_code == 200 and response.content.startswith(PNG_MAGIC):
        return True
    failure.status = response.status_code
    failure.response_headers = response.headers
    failure.response_body = response.content[:4096]
    report.fail(failure)
    return False


def run_campaign(seconds: float, seed: int, workdir: Path, models: Path | None = None) -> Outcome:
    """Fuzz a fresh server for about `seconds` (plus start-up) and report what it answered."""
    report = Report()
    started = time.monotonic()
    with fuzz_server(workdir, models) as server:
        served = requests.get(f"{server.url}/openapi.json", headers=AUTH, timeout=30)
        document = Document(served.json())
        schemathesis_seconds = seconds * SCHEMATHESIS_SHARE
        begun = time.monotonic()
        folder = workdir / "schemathesis"
        run_schemathesis(
            server.url, schemathesis_seconds, seed, folder, report=report, document=document
        )
        attack = Attack(server.url, document, report)
        attack.seed_jobs()
        attack.run(max(1.0, seconds - (time.monotonic() - begun)), seed)
        final_ok = final_generation(server.url, report)
        errors = server.log().count("Traceback (most recent call last)")
        if errors:
            report.notes.append(f"the server logged {errors} tracebacks: see {server.log_path}")
    return Outcome(report, time.monotonic() - started, attack.sent, final_ok, server.log_path)
