"""The fuzzing campaign (`make fuzz`): its parts work, and a short run finds nothing.

The short run is the same code as `make fuzz`, for a fixed 40 s with seed 0 (schemathesis's
--seed and hypothesis's per-run seeds), so a failure here reproduces with
`python -m bench.fuzz --seconds 40 --seed 0`. A 5xx it finds is a bug in the server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from backend import __version__
from backend.config import load_settings
from backend.model.model_catalog import ModelCatalog
from backend.view.openapi import build_spec
from bench.fuzz.__main__ import summary, verdicts
from bench.fuzz.campaign import run_campaign
from bench.fuzz.conformance import Document
from bench.fuzz.hostile import Pairs, Raw, dump, encode
from bench.fuzz.plan import HostileRequest, requests_for
from bench.fuzz.report import Failure, curl
from bench.fuzz.server import SETTINGS

CAMPAIGN_SECONDS = 40

DOCUMENT = build_spec(
    load_settings(SETTINGS).limits,
    ModelCatalog("demo", Path("models")),
    __version__,
)


def test_json_text_carries_what_python_cannot_hold():
    body = {"prompt": "\ud800", "steps": Raw("1e400"), "width": Raw("[" * 3 + "]" * 3)}
    assert dump(body) == '{"prompt":"\\ud800","steps":1e400,"width":[[[]]]}'
    assert dump(Pairs([("a", 1), ("a", 2)])) == '{"a":1,"a":2}'
    assert encode(dump({"p": "\ud800\U0001f600"}, ascii_only=False)) == (
        b'{"p":"\xed\xa0\x80\xf0\x9f\x98\x80"}'
    )


def test_curl_lines_send_the_same_bytes(tmp_path):
    body = b"\x01\xff'\\\"\xed\xa0\x80 $x `"
    failure = Failure("hostile", "POST /jobs", "x", "POST", "http://h/jobs", {}, body, None)
    quoted = curl(failure, tmp_path / "body").split("--data-binary ", 1)[1]
    echoed = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, check=True)
    assert echoed.stdout == body
    failure.body = b"a\x00b"  # no shell word can hold a NUL: the body goes by file
    assert curl(failure, tmp_path / "body").endswith(f"--data-binary @{tmp_path / 'body'}")


def _request(endpoint: str, path: str | None = None, method: str | None = None) -> HostileRequest:
    verb, template = endpoint.split(" ", 1)
    return HostileRequest(endpoint, method or verb, path or template, {}, b"{}")


def test_conformance_flags_what_the_document_does_not_promise():
    document = Document(DOCUMENT)
    app = {"X-Request-ID": "1", "Content-Type": "application/json"}
    error = json.dumps({"error": "no"}).encode()
    generate = _request("POST /image/generate")
    assert document.problems(generate, 400, app, error) == []
    assert document.problems(generate, 500, app, error) == ["server error 500"]
    assert document.problems(generate, 302, app, b"") == ["undocumented status 302"]
    assert document.problems(generate, 400, app, b'{"message": 1}')[0].startswith("body does not")
    html = {**app, "Content-Type": "text/html"}
    assert document.problems(generate, 400, html, b"<p>")[0].startswith("content type")
    # gunicorn's own answers (no request id) are only checked for 5xx
    assert document.problems(generate, 400, {"Content-Type": "text/html"}, b"<p>") == []
    # under /v1/, errors are OpenAI's shape
    openai = _request("POST /v1/images/generations")
    assert document.problems(openai, 400, app, error)[0].startswith("body does not")
    # a job id holding a slash leaves the route: 404 in the plain shape is right
    job = _request("GET /jobs/{job_id}", "/jobs/a%2Fb/c")
    assert document.problems(job, 404, app, error) == []
    assert document.problems(_request("GET /models", method="PUT"), 405, app, error) == []


def test_hostile_requests_cover_every_operation_and_every_kind_of_trouble():
    seen: list[HostileRequest] = []
    # As the campaign draws them: runs of 100, each with its own seed. The document (and so what
    # each seed draws) depends on the models present, so draw up to 16 runs, not a fixed few.
    needles = (b"\\ud", b"\xed\xa0", b"e400", b"\xff", b"\x00", b"\\u0000")
    operations = {f"{m.upper()} {p}" for p, item in DOCUMENT["paths"].items() for m in item}
    for run in range(16):
        bodies = b"\n".join(request.body or b"" for request in seen)
        covered = {request.endpoint for request in seen} == operations
        if run >= 4 and covered and all(needle in bodies for needle in needles):
            break

        @seed(run)
        @settings(
            max_examples=100,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(requests_for(DOCUMENT))
        def collect(request):
            seen.append(request)

        collect()
    assert {request.endpoint for request in seen} == operations
    bodies = b"\n".join(request.body or b"" for request in seen)
    for needle in needles:
        assert needle in bodies, needle
    assert b"[[[[[[[[" in bodies or b'{"a":{"a":{"a":{"a":' in bodies
    headers = [value for request in seen for value in request.headers.values()]
    assert any(not value.startswith(b"Bearer fuzz-key") for value in headers)
    assert any("%" in request.path for request in seen)


@pytest.mark.slow
def test_a_short_campaign_finds_no_failure(models_dir, tmp_path):
    outcome = run_campaign(CAMPAIGN_SECONDS, seed=0, workdir=tmp_path, models=models_dir)
    report = summary(outcome, 0, tmp_path)
    assert all(ok for _, ok in verdicts(outcome)), report
    assert outcome.hostile_requests > 0
