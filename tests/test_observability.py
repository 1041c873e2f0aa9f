"""One structured log line per request, and Prometheus metrics at /metrics."""

from __future__ import annotations

import json
import logging

from prometheus_client.parser import text_string_to_metric_families

PROMPT = "a very personal prompt"
TINY = {"prompt": PROMPT, "width": 64, "height": 64, "steps": 2, "seed": 3}


def access_lines(caplog) -> list[dict]:
    """The request log lines captured so far, parsed."""
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "backend.access"]


def samples(client, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by name and sorted labels."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def test_one_structured_line_per_request_without_the_prompt(make_app, caplog):
    client = make_app().test_client()
    with caplog.at_level(logging.INFO, logger="backend.access"):
        response = client.post("/image/generate", json=TINY, headers={"X-Request-ID": "trace-42"})
        client.get("/jobs/unknown")
    assert response.headers["X-Request-ID"] == "trace-42"
    generated, missing = access_lines(caplog)
    assert generated["request_id"] == "trace-42"
    assert (generated["method"], generated["path"], generated["status"]) == (
        "POST",
        "/image/generate",
        200,
    )
    assert generated["route"] == "/image/generate"
    assert generated["duration_ms"] > 0 and generated["bytes"] == len(response.data)
    assert generated["model"] == "demo" and generated["seeds"] == "3"
    assert float(generated["generation_s"]) > 0 and float(generated["queue_s"]) >= 0
    assert (missing["route"], missing["status"]) == ("/jobs/<job_id>", 404)
    assert len(missing["request_id"]) == 32  # one was made up for it
    assert PROMPT not in caplog.text


def test_prompts_are_logged_only_when_asked(make_app, caplog):
    client = make_app(LOG_PROMPTS="true").test_client()
    with caplog.at_level(logging.INFO, logger="backend.access"):
        client.post("/image/generate", json={**TINY, "negative_prompt": "blur"})
    (line,) = access_lines(caplog)
    assert (line["prompt"], line["negative_prompt"]) == (PROMPT, "blur")


def test_logging_prompts_never_turns_a_bad_body_into_a_500(make_app, caplog):
    client = make_app(LOG_PROMPTS="true").test_client()
    nested = '{"prompt": "x", "a": ' + "[" * 5000 + "]" * 5000 + "}"
    with caplog.at_level(logging.INFO, logger="backend.access"):
        too_large = client.post("/jobs", data="x" * 70_000, content_type="application/json")
        too_deep = client.post("/jobs", data=nested, content_type="application/json")
    assert (too_large.status_code, too_deep.status_code) == (413, 400)
    assert [line["status"] for line in access_lines(caplog)] == [413, 400]


def test_metrics_count_requests_images_rejections_and_loads(make_app):
    app = make_app(MAX_QUEUE_SIZE=0, MAX_BATCH_SIZE=1)
    client = app.test_client()
    before = samples(client)
    assert before[("t2i_queue_depth", (("device", "cpu"),))] == 0
    assert before[("t2i_model_load_seconds", (("device", "cpu"), ("model", "demo")))] > 0
    assert before[("t2i_rejections_total", (("reason", "queue_full"),))] == 0
    assert client.post("/image/generate", json={**TINY, "num_images": 2}).status_code == 200
    assert client.post("/image/generate", json={"prompt": "x", "width": 7}).status_code == 400
    after = samples(client)
    route = ("route", "/image/generate")
    assert after[("t2i_http_requests_total", (("method", "POST"), route, ("status", "200")))] == 1
    assert after[("t2i_http_requests_total", (("method", "POST"), route, ("status", "400")))] == 1
    assert after[("t2i_images_generated_total", (("model", "demo"),))] == 2
    assert after[("t2i_generation_seconds_count", (("model", "demo"),))] == 1
    assert after[("t2i_http_request_duration_seconds_count", (route,))] == 2
    assert after[("t2i_jobs", (("status", "succeeded"),))] == 0


def test_metrics_count_refusals_by_reason(make_app):
    key = "k" * 20
    app = make_app(API_KEYS=key, RATE_LIMIT="1/minute")
    client = app.test_client()
    headers = {"X-API-Key": key}
    assert client.get("/models").status_code == 401
    assert client.post("/image/generate", json=TINY, headers=headers).status_code == 200
    assert client.post("/image/generate", json=TINY, headers=headers).status_code == 429
    assert client.get("/metrics").status_code == 401  # metrics are not public either
    after = samples(client, headers)
    assert after[("t2i_rejections_total", (("reason", "unauthorized"),))] == 2
    assert after[("t2i_rejections_total", (("reason", "rate_limited"),))] == 1
