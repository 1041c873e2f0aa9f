"""The OpenAPI document is generated from the schemas, and the server keeps its promises.

schemathesis reads GET /openapi.json and sends valid and invalid requests to every operation
of the real app (in-process, the real demo pipeline): no 5xx, every status and body documented.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import schemathesis
from conftest import LIMITS
from hypothesis import HealthCheck, settings

from backend import __version__
from backend.config import load_settings
from backend.controller import PAGE_ENDPOINTS
from backend.main import create_app
from backend.model.model_catalog import ModelCatalog
from backend.view.openapi import build_spec

# Small limits keep each generated request to a few milliseconds of demo pipeline.
FUZZ_LIMITS = {"MAX_WIDTH": 128, "MAX_HEIGHT": 128, "MAX_STEPS": 2, "MAX_IMAGES": 2}
GENERATION_PATHS = ["/image/generate", "/generate", "/generate-image", "/v1/images/generations",
                    "/sdapi/v1/txt2img", "/sdapi/v1/img2img", "/jobs", "/image/edit", "/jobs/edit",
                    "/v1/images/edits"]  # fmt: skip
# The fuzzer submits jobs faster than the demo draws them; a full queue's 503 (which
# schemathesis counts as a server error) is tested in test_serving.py instead.
FUZZ_SERVING = {"MAX_QUEUE_SIZE": 100_000}


class _AppUnderTest:
    """The WSGI app schemathesis sends cases to, bound once the fixture has built it.

    schemathesis binds its schema to an app when the module is imported, but the real app (with
    its model thread) should only exist while these tests run; and its lazy pytest-fixture
    loader does not work with pytest 9 (it reads a removed `_nodeid` attribute).
    """

    target = None

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


# The document as the server builds it for these limits; a test checks it is what it serves.
_SETTINGS = load_settings({**LIMITS, **FUZZ_LIMITS, "DEFAULT_MODEL": "demo"})
DOCUMENT = build_spec(_SETTINGS.limits, ModelCatalog("demo", Path("models")), __version__)
# Valid-by-schema bodies may still break a rule the schema cannot express (an alias that
# contradicts its twin, batch_size x n_iter over the limit, an unknown model name): those answer
# 400/404 by design, so positive data may get them on the generation endpoints.
_CONFIG = {
    "operations": [
        {
            "include-path": path,
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}},
        }
        for path in GENERATION_PATHS
    ]
}
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict(_CONFIG))
schema.app = _AppUnderTest()


@pytest.fixture(scope="module", autouse=True)
def fuzz_app(base_settings):
    app = create_app({**base_settings, **FUZZ_LIMITS, **FUZZ_SERVING})
    engine = app.extensions["engine"]
    assert engine.wait_until_loaded(120)
    schema.app.target = app
    yield app
    schema.app.target = None
    engine.stop(timeout=30)


def test_the_fuzzed_document_is_the_served_one(fuzz_app):
    assert fuzz_app.test_client().get("/openapi.json").get_json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_keeps_its_documented_promises(case):
    # schemathesis sends Accept: */*; ask for JSON too, so both response shapes are checked.
    for accept in ("*/*", "application/json"):
        case.call_and_validate(headers={"Accept": accept})


def test_document_states_the_configured_limits(fuzz_app):
    document = fuzz_app.test_client().get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    request = document["components"]["schemas"]["GenerateRequest"]
    properties = request["properties"]
    assert properties["width"]["maximum"] == 128 and properties["width"]["multipleOf"] == 8
    assert properties["steps"]["maximum"] == 2
    assert properties["num_images"]["maximum"] == 2
    assert request["required"] == ["prompt"]
    assert request["additionalProperties"] is False
    operation = document["paths"]["/image/generate"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "404", "413", "415", "503"}
    assert "image/png" in operation["responses"]["200"]["content"]
    openai_error = document["paths"]["/v1/images/generations"]["post"]["responses"]["400"]
    assert openai_error["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")


def test_every_route_is_documented(fuzz_app):
    documented = set(fuzz_app.test_client().get("/openapi.json").get_json()["paths"])
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in fuzz_app.url_map.iter_rules()
        if rule.endpoint not in PAGE_ENDPOINTS  # browser pages, not API
    }
    assert routes - {"/openapi.json"} == documented
