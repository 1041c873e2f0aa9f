"""Part 1: schemathesis (every check, every phase) on the server's own /openapi.json."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from requests.structures import CaseInsensitiveDict

from bench.fuzz.conformance import Document
from bench.fuzz.report import Failure, Report
from bench.fuzz.server import API_KEY, SETTINGS

SOURCE = "schemathesis"
# Endpoints whose schema cannot express every rule (an alias contradicting its twin, the pixel
# limit, batch_size x n_iter, a model name that does not exist, an image that does not decode):
# valid-by-schema bodies may get 400 or 404 there by design.
GENERATING = (
    "image/generate|generate|generate-image|jobs|v1/images/generations|sdapi/v1/txt2img"
    "|sdapi/v1/img2img|image/edit|jobs/edit|v1/images/edits"
)
# Job paths answer valid requests 409 (no images yet) or 410 (deleted) by design, too. (These
# per-operation settings reach every phase; `enabled = false` would not: --checks all wins.)
CONFIG = f"""\
[[operations]]
include-path-regex = "^/({GENERATING})$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-path-regex = "^/jobs/"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "410"]
"""
# DELETE of a queued or running job cancels it, and a GET then shows it cancelled, as the document
# says ("Cancel a queued or running job; delete a finished one"); use_after_free (stateful chains
# only, and DELETE /jobs/{job_id} is the only DELETE) would call that a failure.
EXCLUDED_CHECKS = "use_after_free"
# A synchronous request waits behind every job the fuzzer queued before it (hundreds, in
# bursts): schemathesis' default 10 s limit measured that backlog on a slow machine, not the
# server. The promise checked is the server's own: an answer within its request deadline.
DEADLINE_SECONDS = int(SETTINGS["REQUEST_TIMEOUT_SECONDS"]) + 5
# For schemathesis to start, finish its last case (which may take up to that) and report.
GRACE_SECONDS = DEADLINE_SECONDS + 60


def command(url: str, seconds: float, seed: int, folder: Path) -> list[str]:
    """The schemathesis command line for a run of `seconds` against `url`."""
    return [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(folder / "schemathesis.toml"),
        "run", f"{url}/openapi.json",
        "--checks", "all",
        "--exclude-checks", EXCLUDED_CHECKS,
        "--max-time", str(max(1, round(seconds))),
        "--seed", str(seed),
        "--header", f"Authorization: Bearer {API_KEY}",
        "--workers", "1",
        "--request-timeout", str(DEADLINE_SECONDS + 10),
        "--max-response-time", str(DEADLINE_SECONDS),
        "--suppress-health-check", "all",
        "--generation-database", "none",
        "--output-sanitize", "false",
        "--no-color",
        "--report", "ndjson",
        "--report-ndjson-path", str(folder / "events.ndjson"),
    ]  # fmt: skip


def run_schemathesis(
    url: str, seconds: float, seed: int, folder: Path, *, report: Report, document: Document
) -> int:
    """Run schemathesis for about `seconds`; count its requests and failures into `report`."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "schemathesis.toml").write_text(CONFIG)
    log = folder / "schemathesis.log"
    with log.open("wb") as out:
        try:
            code = subprocess.run(
                command(url, seconds, seed, folder),
                cwd=folder,  # its crash cache (.schemathesis/) goes there, not in the checkout
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=seconds + GRACE_SECONDS,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            report.notes.append(f"schemathesis overran its {seconds:.0f} s budget: killed")
            code = -1
    events = folder / "events.ndjson"
    if events.is_file():
        with events.open() as lines:
            for line in lines:
                _read_event(json.loads(line), report, document)
    failed = sum(n for key, n in report.failure_counts.items() if key[0] == SOURCE)
    if code != 0 and not failed:  # it failed without a failing check: an error of its own
        tail = log.read_text(errors="replace")[-3000:]
        report.fail(Failure(SOURCE, "schemathesis", f"exit code {code}", "", "", {}, None, None,
                            response_body=tail.encode()))  # fmt: skip
    return code


def _read_event(event: dict[str, Any], report: Report, document: Document) -> None:
    finished = event.get("ScenarioFinished")
    if not finished:
        return
    recorder = finished["recorder"]
    label = recorder["label"]  # an operation, or "Stateful tests" for chains of them
    interactions = recorder.get("interactions", {})
    for interaction in interactions.values():
        request, response = interaction["request"], interaction["response"] or {}
        endpoint = document.label(request["method"], request["uri"]) or label
        report.count(SOURCE, endpoint, response.get("status_code", "none"))
    for case_id, checks in recorder.get("checks", {}).items():
        for check in checks:
            if check["status"] == "failure":
                report.fail(_failure(label, check, interactions.get(case_id)))


def _failure(label: str, check: dict[str, Any], interaction: dict[str, Any] | None) -> Failure:
    info = check.get("failure_info") or {}
    failure = info.get("failure", {})
    title = failure.get("title") or check["name"]
    message = (failure.get("message") or "").strip().replace("\n", " ")[:300]
    problem = f"{check['name']}: {title}" + (f": {message}" if message else "")
    if interaction is None:
        return Failure(SOURCE, label, problem, "", "", {}, None, None)
    request, response = interaction["request"], interaction["response"] or {}
    headers = {
        name: ", ".join(values).encode("utf-8", "surrogateescape")
        for name, values in request.get("headers", {}).items()
    }
    return Failure(
        SOURCE,
        label,
        problem,
        request["method"],
        request["uri"],
        headers,
        _bytes(request.get("body")),
        response.get("status_code"),
        CaseInsensitiveDict(
            {name: ", ".join(values) for name, values in response.get("headers", {}).items()}
        ),
        _bytes(response.get("content")) or b"",
    )


def _bytes(content: dict[str, str] | None) -> bytes | None:
    if not content:
        return None
    if "$base64" in content:
        return base64.b64decode(content["$base64"])
    return str(content.get("string", "")).encode("utf-8", "surrogateescape")
