"""Access control: API keys on every route but the probes, a generation quota, and CORS."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from backend.controller import PUBLIC_ENDPOINTS
from backend.main import create_app

# Access settings off unless a test says otherwise, whatever the developer's environment says.
OFF = {"API_KEYS": "", "API_KEYS_FILE": "", "RATE_LIMIT": "", "CORS_ORIGINS": ""}
KEY = "k" * 20
OTHER_KEY = "o" * 24
WRONG_KEY = "w" * 20
SMALL = {"prompt": "x", "width": 64, "height": 64, "steps": 1}
ORIGIN = "https://app.example.com"
# Each generating API, with a tiny request for it.
GENERATIONS = [
    ("/image/generate", SMALL),
    ("/v1/images/generations", {"prompt": "x", "size": "64x64", "steps": 1}),
    ("/sdapi/v1/txt2img", SMALL),
]


@pytest.fixture(scope="module")
def keyed_app(base_settings):
    """One app with two API keys; authentication keeps no state, so tests may share it."""
    application = create_app({**base_settings, **OFF, "API_KEYS": f"{KEY},{OTHER_KEY}"})
    engine = application.extensions["engine"]
    assert engine.wait_until_loaded(120)
    yield application
    engine.stop(timeout=30)


@pytest.fixture
def make_app(make_app):
    """conftest's `make_app`, with the access settings off unless a test turns them on."""
    return lambda wait=True, **overrides: make_app(wait, **{**OFF, **overrides})


@pytest.fixture
def keyed(keyed_app):
    """A test client on the keyed app."""
    return keyed_app.test_client()


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for `key`."""
    return {"Authorization": f"Bearer {key}"}


def assert_error(response, status: int) -> str:
    """Our JSON error shape (OpenAI's under /v1/), with `status`; returns the message."""
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    if response.request.path.startswith("/v1/"):
        assert set(error) == {"message", "type", "param", "code"}
        error = error["message"]
    assert isinstance(error, str) and error
    return error


def dummy_value(converter: str | None) -> str:
    """A value a path argument's converter accepts."""
    return {"int": "1", "float": "1.5", "uuid": str(uuid.uuid4())}.get(converter or "", "dummy")


def every_route(app) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) for every rule and method of the app, path arguments filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        converters = dict(
            (name, converter)
            for converter, name in re.findall(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", rule.rule)
        )
        _, path = rule.build({name: dummy_value(c) for name, c in converters.items()})
        routes += [(m, path, rule.endpoint) for m in sorted(rule.methods - {"OPTIONS", "HEAD"})]
    return routes


def test_every_route_but_the_probes_needs_a_key(keyed_app, keyed):
    routes = [r for r in every_route(keyed_app) if r[2] not in PUBLIC_ENDPOINTS]
    endpoints = {endpoint for _, _, endpoint in routes}
    assert {"image.generate", "models.list_models", "openai.generate_images"} <= endpoints
    for method, path, endpoint in routes:
        for headers in ({}, bearer(WRONG_KEY), {"X-API-Key": WRONG_KEY}):
            response = keyed.open(path, method=method, headers=headers)
            assert "X-API-Key" in assert_error(response, 401), (method, path, endpoint)
            assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)
            assert WRONG_KEY not in response.get_data(as_text=True)
        # The right key passes the gate; what the route then answers is its own business.
        response = keyed.open(path, method=method, headers=bearer(KEY), json={})
        assert response.status_code != 401, (method, path, response.get_json())


def test_bearer_and_x_api_key_both_work(keyed):
    assert keyed.get("/models", headers=bearer(KEY)).status_code == 200
    assert keyed.get("/models", headers={"Authorization": f"bearer {OTHER_KEY}"}).status_code == 200
    assert keyed.get("/models", headers={"X-API-Key": KEY}).status_code == 200
    assert keyed.get("/models", headers={"X-API-Key": OTHER_KEY}).status_code == 200
    # One valid credential is enough, whichever header holds it.
    both = {**bearer(WRONG_KEY), "X-API-Key": KEY}
    assert keyed.get("/models", headers=both).status_code == 200


def test_a_key_must_match_exactly(keyed):
    for wrong in (KEY[:-1], KEY + "k", KEY.upper(), f"{KEY},{OTHER_KEY}", ""):
        assert_error(keyed.get("/models", headers={"X-API-Key": wrong}), 401)
    for header in (f"Basic {KEY}", KEY, f"Token {KEY}", "Bearer"):
        assert_error(keyed.get("/models", headers={"Authorization": header}), 401)


def test_a_real_generation_with_a_key(keyed):
    response = keyed.post("/image/generate", json=SMALL, headers=bearer(KEY))
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "image/png"


def test_the_probes_need_no_key(keyed):
    assert keyed.get("/ping").data == b"pong"
    assert keyed.get("/health").status_code == 200
    # A wrong key on a probe is ignored, not punished: probes carry whatever they carry.
    assert keyed.get("/health", headers=bearer(WRONG_KEY)).status_code == 200


def test_the_error_says_which_headers_to_send(keyed):
    missing = assert_error(keyed.get("/models"), 401)
    wrong = assert_error(keyed.get("/models", headers=bearer(WRONG_KEY)), 401)
    for message in (missing, wrong):
        assert "Authorization: Bearer" in message and "X-API-Key" in message
    assert missing != wrong


def test_unknown_routes_and_methods_need_a_key_too(keyed, make_app):
    for method, path in (("GET", "/nope"), ("GET", "/v1/nope"), ("DELETE", "/models")):
        assert_error(keyed.open(path, method=method), 401)
        assert_error(keyed.open(path, method=method, headers=bearer(WRONG_KEY)), 401)
    assert_error(keyed.get("/nope", headers=bearer(KEY)), 404)
    assert_error(keyed.delete("/models", headers=bearer(KEY)), 405)
    open_client = make_app(wait=False).test_client()
    assert_error(open_client.get("/nope"), 404)


def test_openai_routes_answer_401_in_openai_shape(keyed):
    response = keyed.post("/v1/images/generations", json=SMALL, headers=bearer(WRONG_KEY))
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "X-API-Key" in error["message"] and WRONG_KEY not in response.get_data(as_text=True)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert keyed.get("/v1/models", headers=bearer(KEY)).status_code == 200


def test_keys_from_a_file(make_app, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# one key a line\n{KEY}\n\n  {OTHER_KEY}  \n")
    client = make_app(wait=False, API_KEYS_FILE=str(keys)).test_client()
    assert client.get("/models", headers=bearer(KEY)).status_code == 200
    assert client.get("/models", headers={"X-API-Key": OTHER_KEY}).status_code == 200
    assert_error(client.get("/models"), 401)
    assert_error(client.get("/models", headers=bearer("# one key a line")), 401)


def test_without_keys_everything_is_open(make_app):
    client = make_app(wait=False).test_client()
    assert client.get("/models").status_code == 200
    assert "WWW-Authenticate" not in client.get("/models").headers
    assert client.get("/models", headers=bearer(WRONG_KEY)).status_code == 200


def generate(client, headers: dict[str, str], number: int = 0):
    """One small generation through the `number`th generating API (modulo their count)."""
    path, body = GENERATIONS[number % len(GENERATIONS)]
    return client.post(path, json=body, headers=headers)


def test_the_rate_limit_counts_generations_only(make_app):
    client = make_app(RATE_LIMIT="2/minute").test_client()
    for number in range(2):
        assert generate(client, {}, number).status_code == 200
        # Listings, polls and probes are free.
        for path in ("/models", "/v1/models", "/health", "/sdapi/v1/sd-models"):
            assert client.get(path).status_code == 200
    # The quota is shared: a third generation through a third API is still the third.
    response = generate(client, {}, 2)
    message = assert_error(response, 429)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert "2 per 1 minute" in message and f"{retry_after} seconds" in message
    assert response.headers["X-Request-ID"]
    assert generate(client, {}, 0).status_code == 429
    assert client.get("/models").status_code == 200  # still free once the quota is spent


def test_a_429_under_v1_is_openai_shaped(make_app):
    client = make_app(RATE_LIMIT="1/minute").test_client()
    assert generate(client, {}, 1).status_code == 200
    response = generate(client, {}, 1)
    assert "Retry in" in assert_error(response, 429)
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    assert int(response.headers["Retry-After"]) >= 1


def test_each_key_has_its_own_quota(make_app):
    client = make_app(RATE_LIMIT="2/minute", API_KEYS=f"{KEY},{OTHER_KEY}").test_client()
    for number in range(2):
        assert generate(client, bearer(KEY), number).status_code == 200
    assert_error(generate(client, bearer(KEY)), 429)
    assert_error(generate(client, {"X-API-Key": KEY}), 429)  # the key, not the header, counts
    for number in range(2):
        assert generate(client, {"X-API-Key": OTHER_KEY}, number).status_code == 200
    assert_error(generate(client, bearer(OTHER_KEY)), 429)


def test_refused_requests_cost_no_quota(make_app):
    client = make_app(RATE_LIMIT="2/minute", API_KEYS=KEY).test_client()
    # Authentication runs first: were the limiter first, the third of these would be a 429.
    for _ in range(5):
        assert_error(generate(client, bearer(WRONG_KEY)), 401)
        assert_error(generate(client, {}), 401)
    assert generate(client, bearer(KEY)).status_code == 200


def test_several_limits_at_once(make_app):
    client = make_app(RATE_LIMIT="100/hour;1/minute").test_client()
    assert generate(client, {}).status_code == 200
    response = generate(client, {})
    assert "1 per 1 minute" in assert_error(response, 429)
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_apps_do_not_share_quotas(make_app):
    first = make_app(wait=False, RATE_LIMIT="1/minute").test_client()
    second = make_app(RATE_LIMIT="1/minute").test_client()
    # Invalid requests still count as calls; they make the point without generating.
    assert_error(first.post("/image/generate", json={}), 400)
    assert_error(first.post("/image/generate", json={}), 429)
    assert_error(second.post("/image/generate", json={}), 400)


def test_cors_is_off_by_default(make_app):
    client = make_app(wait=False).test_client()
    response = client.get("/models", headers={"Origin": ORIGIN})
    assert not [name for name, _ in response.headers if name.startswith("Access-Control")]
    preflight = client.options(
        "/image/generate",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def preflight(client, path: str = "/image/generate", origin: str = ORIGIN):
    """What a browser asks before a POST with an API key and a JSON body."""
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-api-key, content-type",
        },
    )


def test_cors_for_listed_origins_only(make_app):
    other = "https://other.example.com"
    client = make_app(
        wait=False, API_KEYS=KEY, CORS_ORIGINS=f"{ORIGIN}, http://localhost:3000"
    ).test_client()
    response = client.get("/models", headers={"Origin": ORIGIN, **bearer(KEY)})
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in response.headers.get("Vary", "")
    exposed = response.headers["Access-Control-Expose-Headers"]
    for name in ("X-Seed", "X-Seeds", "X-Model", "X-Request-ID", "Retry-After", "Location"):
        assert name in exposed
    for origin in (other, "https://app.example.com.evil.test", "http://app.example.com", None):
        headers = {"Origin": origin} if origin else {}
        response = client.get("/models", headers={**headers, **bearer(KEY)})
        assert "Access-Control-Allow-Origin" not in response.headers, origin
    # An error is readable by the page too, or it could not tell the user what went wrong.
    response = client.get("/models", headers={"Origin": ORIGIN})
    assert_error(response, 401)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_preflight_needs_no_key(make_app):
    client = make_app(wait=False, API_KEYS=KEY, CORS_ORIGINS=ORIGIN).test_client()
    response = preflight(client)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "x-api-key", "content-type"} <= set(allowed.split(", "))
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert (
        "Access-Control-Allow-Origin" not in preflight(client, origin="https://evil.test").headers
    )
    # Only a real preflight of a real route is exempt.
    assert_error(client.options("/image/generate"), 401)
    assert_error(preflight(client, path="/nope"), 401)


def test_a_wildcard_origin(make_app):
    client = make_app(wait=False, CORS_ORIGINS="*", RATE_LIMIT="1/minute").test_client()
    response = client.get("/models", headers={"Origin": "https://anywhere.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    # Preflights are free: a browser's OPTIONS must not spend the one generation allowed.
    for _ in range(3):
        assert preflight(client).status_code == 200
    assert_error(client.post("/image/generate", json={}), 400)


def test_an_origin_is_never_read_as_a_pattern(make_app):
    client = make_app(wait=False, CORS_ORIGINS="https://*.example.com").test_client()
    for origin in ("https://app.example.com", "https://xxexample.com"):
        response = client.get("/models", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers, origin
    response = client.get("/models", headers={"Origin": "https://*.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://*.example.com"


@pytest.mark.slow
def test_through_gunicorn(start_server):
    server = start_server(
        **{**OFF, "API_KEYS": KEY, "RATE_LIMIT": "1/minute", "CORS_ORIGINS": ORIGIN}
    )
    server.wait_for_ping()
    server.wait_until_healthy()
    url = f"{server.url}/image/generate"
    refused = requests.post(url, json=SMALL, timeout=30)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.json()["error"]
    browser = requests.options(
        url,
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert browser.status_code == 200
    assert browser.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert requests.post(url, json=SMALL, headers=bearer(KEY), timeout=60).status_code == 200
    limited = requests.post(url, json=SMALL, headers=bearer(KEY), timeout=30)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "Retry in" in limited.json()["error"]
    assert KEY not in server.log()
