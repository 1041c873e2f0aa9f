"""Part 2: hypothesis draws hostile requests for every endpoint; every answer is checked."""

from __future__ import annotations

import json
import time

import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from bench.fuzz.conformance import Document
from bench.fuzz.plan import REAL_JOB, HostileRequest, requests_for
from bench.fuzz.report import Failure, Report
from bench.fuzz.server import AUTH

SOURCE = "hostile"
BATCH = 100  # requests per hypothesis run; each run has its own seed, derived from the campaign's
TIMEOUT_SECONDS = 60.0  # an answer slower than this is a hang
JOB_POOL = 32  # ids of submitted jobs kept for the job paths
VALID_JOB = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1}


class Attack:
    """Sends hostile requests to one server and records what came back."""

    def __init__(self, url: str, document: Document, report: Report) -> None:
        self.url = url
        self.document = document
        self.report = report
        self.session = requests.Session()
        self.jobs: list[str] = []
        self._next_job = 0
        self.sent = 0

    def seed_jobs(self, count: int = 2) -> None:
        """Submit a few valid jobs, so that job paths can name real ones."""
        for _ in range(count):
            response = self.session.post(
                f"{self.url}/jobs", json=VALID_JOB, headers=AUTH, timeout=TIMEOUT_SECONDS
            )
            if response.status_code == 202:
                self.jobs.append(response.json()["id"])

    def run(self, seconds: float, seed: int) -> None:
        """Send hostile requests for `seconds`, in hypothesis runs seeded `seed`, `seed + 1`, ..."""
        deadline = time.monotonic() + seconds
        strategy = requests_for(self.document.raw)
        run = 0
        while time.monotonic() < deadline:

            @hypothesis_seed(seed * 100_003 + run)
            @settings(
                max_examples=BATCH,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(strategy)
            def probe(request: HostileRequest) -> None:
                if time.monotonic() < deadline:
                    self.send(request)

            probe()
            run += 1

    def _job(self) -> str:
        if not self.jobs:
            return "no-job-yet"
        self._next_job = (self._next_job + 1) % len(self.jobs)
        return self.jobs[self._next_job]

    def send(self, request: HostileRequest) -> None:
        """Send `request` byte for byte; count the answer; record a failure if it is one."""
        path = request.path.replace(REAL_JOB, self._job())
        prepared = requests.Request(
            request.method, self.url + "/", headers=request.headers, data=request.body
        ).prepare()
        prepared.url = self.url + path  # exactly as generated: no re-quoting, no normalising
        if request.body is None:
            prepared.headers.pop("Content-Length", None)
        self.sent += 1
        failure = Failure(
            SOURCE, request.endpoint, "", request.method, prepared.url, request.headers,
            request.body, None,
        )  # fmt: skip
        try:
            response = self.session.send(prepared, timeout=TIMEOUT_SECONDS, allow_redirects=False)
        except requests.exceptions.InvalidHeader:
            self.report.count(SOURCE, request.endpoint, "unsendable")
            return
        except requests.RequestException as error:
            self.report.count(SOURCE, request.endpoint, type(error).__name__)
            failure.problem = f"no answer: {type(error).__name__}: {error}"
            self.report.fail(failure)
            self.session = requests.Session()  # the old connection may be broken
            return
        self.report.count(SOURCE, request.endpoint, response.status_code)
        headers = response.headers
        self._remember_job(request, response)
        problems = self.document.problems(request, response.status_code, headers, response.content)
        for problem in problems:
            failure.problem = problem
            failure.status = response.status_code
            failure.response_headers = headers
            failure.response_body = response.content[:4096]
            self.report.fail(Failure(**vars(failure)))

    def _remember_job(self, request: HostileRequest, response: requests.Response) -> None:
        if response.status_code != 202 or request.endpoint != "POST /jobs":
            return
        try:
            job_id = json.loads(response.content)["id"]
        except (ValueError, KeyError, TypeError):
            return  # the conformance check reports a malformed 202
        self.jobs = [*self.jobs, job_id][-JOB_POOL:]
