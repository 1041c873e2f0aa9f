"""The web page at / and Swagger UI at /docs, in headless Chromium against real gunicorn and the
trained demo model. Skipped, with the reason, where Debian's chromium is not installed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, launch_server
from PIL import Image, ImageDraw

from bench.browser import find_chromium, launch

CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "Browser tests skipped: chromium is not installed (apt-get install chromium, as .ci/run "
        "does; or set CHROMIUM_PATH).",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.slow
KEY = "page-test-key-0123456789"
TIMEOUT_MS = 60_000
expect.set_options(timeout=TIMEOUT_MS)  # a loaded 2-core CI machine: generous waits
SLOW = {"width": "256", "height": "256", "steps": "100"}  # several seconds on a CPU


def _serve(base_settings: dict[str, object], folder: Path, **overrides: object) -> ServerProcess:
    server = launch_server(base_settings, folder / "server.log", JOBS_DIR=folder, **overrides)
    server.wait_for_ping()
    server.wait_until_healthy()
    return server


@pytest.fixture(scope="module")
def server(base_settings, tmp_path_factory) -> Iterator[ServerProcess]:
    """gunicorn serving the demo, without API keys."""
    process = _serve(base_settings, tmp_path_factory.mktemp("page-server"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def keyed_server(base_settings, tmp_path_factory) -> Iterator[ServerProcess]:
    """gunicorn serving the demo, with API_KEYS set."""
    process = _serve(base_settings, tmp_path_factory.mktemp("keyed-server"), API_KEYS=KEY)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright, CHROMIUM)
        yield chromium
        chromium.close()


class Tab:
    """A fresh browser context on `url`: its own storage; remembers every request and JS error."""

    def __init__(self, browser, url: str, width: int = 1280, height: int = 900) -> None:
        self.url = url
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append((r.method, r.url)))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, path: str = "/") -> object:
        self.page.goto(self.url + path)
        if path == "/":
            self.page.wait_for_selector("body.ready")
        return self.page

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture
def tab(browser, server) -> Iterator[Tab]:
    opened = Tab(browser, server.url)
    yield opened
    opened.close()


def _generate(page, prompt: str, seed: int | None = None, **fields: str) -> None:
    page.fill("#prompt", prompt)
    if seed is not None:
        page.uncheck("#seed-random")
        page.fill("#seed", str(seed))
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    page.click("#generate")


def _job_of(page) -> str:
    expect(page.locator("#status")).to_have_attribute("data-job", re.compile(".+"))
    return page.get_attribute("#status", "data-job")


def test_the_page_loads_everything_from_the_app(tab):
    page = tab.open()
    expect(page).to_have_title("Text-to-image")
    assert page.locator("#model option").all_inner_texts() == ["demo"]  # installed models only
    assert "euler_a" in page.locator("#scheduler option").all_inner_texts()
    assert page.input_value("#width") == "64"  # the model's default size
    assert page.locator("#size-preset option").count() >= 3
    assert page.locator("#loras-box").is_visible()  # the demo's all-green LoRA fits the family
    assert all(url.startswith(tab.url) for _, url in tab.requests), tab.requests
    assert {"/static/page.js", "/static/page.css", "/models"} <= {
        url.removeprefix(tab.url) for _, url in tab.requests
    }


def test_generate_shows_the_image_with_its_seed(tab):
    page = tab.open()
    page.fill("#prompt", "a red circle on a blue background")
    page.uncheck("#seed-random")
    page.fill("#seed", "1234")
    page.press("#prompt", "Control+Enter")  # the keyboard shortcut submits
    image = page.locator(".result img")
    expect(image).to_have_attribute("src", re.compile("^blob:"))
    expect(page.locator(".result .seed b")).to_have_text("1234")
    expect(page.locator("#status")).to_have_text(re.compile("^Done"))
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [64, 64]
    # What was asked for: the background is blue, and there is red in it.
    red, green, blue = image.evaluate(
        """img => { const c = document.createElement('canvas'); c.width = 64; c.height = 64;
        const x = c.getContext('2d'); x.drawImage(img, 0, 0);
        const d = x.getImageData(0, 0, 64, 64).data; const sum = [0, 0, 0];
        for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
        return sum.map(v => v / (d.length / 4)); }"""
    )
    assert blue > red > green, (red, green, blue)
    download = page.locator(".result a.download")
    assert download.get_attribute("download") == "demo-1234.png"
    with page.expect_download() as saved:
        download.click()
    assert Path(saved.value.path()).read_bytes().startswith(b"\x89PNG")
    page.locator(".result details summary").click()
    expect(page.locator(".result dl")).to_contain_text("a red circle on a blue background")
    # "Reuse this seed" puts it back in the seed field.
    page.fill("#seed", "")
    page.check("#seed-random")
    page.click(".result .reuse")
    assert page.input_value("#seed") == "1234"
    assert not page.is_checked("#seed-random")


def test_the_progress_bar_moves_during_a_slow_job(tab):
    page = tab.open()
    _generate(page, "a slow one", **SLOW)
    seen: set[float] = set()
    for _ in range(200):
        value = page.evaluate("document.getElementById('progress').position")
        if 0 < value < 1:
            seen.add(value)
        if len(seen) >= 3:
            break
        page.wait_for_timeout(50)
    assert len(seen) >= 3, seen
    expect(page.locator("#status")).to_contain_text(re.compile(r"step \d+ of 100"))
    page.click("#cancel")  # don't keep the server busy
    expect(page.locator("#status")).to_have_text("Cancelled.")


def test_cancel_stops_the_job(tab, server):
    page = tab.open()
    _generate(page, "to be cancelled", **SLOW)
    job_id = _job_of(page)
    expect(page.locator("#status")).to_contain_text("step")
    page.click("#cancel")
    expect(page.locator("#status")).to_have_text("Cancelled.")
    assert page.locator("#generate").is_enabled()
    assert page.locator(".result").count() == 0
    job = requests.get(f"{server.url}/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled"
    assert job["progress"]["step"] < 100


def test_the_queue_position_shows_while_another_job_runs(tab, server):
    page = tab.open()
    body = {"prompt": "ahead of you", "width": 256, "height": 256, "steps": 100}
    ahead = requests.post(f"{server.url}/jobs", json=body, timeout=10).json()
    try:
        _generate(page, "a red circle on a blue background", seed=1)
        expect(page.locator("#status")).to_have_text(
            re.compile(r"^Queued: (next in line|\d+ jobs? ahead)")
        )
    finally:
        requests.delete(f"{server.url}/jobs/{ahead['id']}", timeout=10)
    expect(page.locator(".result .seed b")).to_have_text("1")


def test_live_previews_from_the_event_stream(tab):
    page = tab.open()
    page.check("#previews")
    with page.expect_request("**/jobs") as sent:
        _generate(page, "a blue star on a white background", width="128", height="128", steps="40")
    assert sent.value.post_data_json["preview_every"] == 5  # about eight previews a run
    preview = page.locator("#preview")
    expect(preview).to_have_attribute("src", re.compile("^data:image/png;base64,"))
    expect(preview).to_be_visible()
    expect(page.locator(".result img")).to_have_attribute("src", re.compile("^blob:"))
    expect(preview).to_be_hidden()  # the images replace it
    events = [url for _, url in tab.requests if url.endswith("/events")]
    assert events, "the page did not follow the job's event stream"


def test_a_bad_size_is_shown_next_to_its_field(tab):
    page = tab.open()
    _generate(page, "a square", width="100")
    expect(page.locator("#err-width")).to_have_text("Must be a multiple of 8.")
    expect(page.locator("#width")).to_have_attribute("aria-invalid", "true")
    _generate(page, "a square", width="4096")
    expect(page.locator("#err-width")).to_have_text("Must be between 64 and 2048.")
    _generate(page, "a square", width="2048", height="2048")
    expect(page.locator("#err-height")).to_contain_text("more than the limit of")
    assert not [url for method, url in tab.requests if method == "POST"]  # refused before sending
    # The API's own errors land next to their field too: a LoRA weight out of its range.
    page.fill("#width", "64")
    page.fill("#height", "64")
    page.check("#loras input[type=checkbox]")
    page.fill("#loras .weight", "99")
    page.click("#generate")
    expect(page.locator("#err-loras")).to_contain_text("Must be between -4.0 and 4.0.")
    expect(page.locator("#err-width")).to_be_hidden()


def test_history_restores_the_parameters(tab):
    page = tab.open()
    _generate(page, "a green star on a white background", seed=77, steps="6")
    expect(page.locator("#history li")).to_have_count(1)
    page.reload()  # the history lives in this browser's storage
    page.wait_for_selector("body.ready")
    page.fill("#prompt", "something else")
    page.fill("#steps", "20")
    page.click("#history button.history-item")
    assert page.input_value("#prompt") == "a green star on a white background"
    assert page.input_value("#steps") == "6"
    assert page.input_value("#seed") == "77"
    assert not page.is_checked("#seed-random")
    stored = page.evaluate("localStorage.getItem('t2i.history')")
    assert "a green star" in stored


def _png(path: Path, background: str = "blue", circle: str = "red") -> Path:
    image = Image.new("RGB", (64, 64), background)
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=circle)
    image.save(path)
    return path


def test_img2img_with_a_painted_mask(tab, server, tmp_path):
    page = tab.open()
    page.locator("#init-box summary").click()
    page.set_input_files("#init-image", str(_png(tmp_path / "start.png")))
    canvas = page.locator("#mask")
    expect(canvas).to_be_visible()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
    with page.expect_request("**/jobs/edit") as sent:
        _generate(page, "a green circle on a blue background", seed=3)
    assert sent.value.headers["content-type"].startswith("multipart/form-data")
    expect(page.locator(".result img")).to_have_attribute("src", re.compile("^blob:"))
    page.locator(".result details summary").click()
    expect(page.locator(".result dl")).to_contain_text("init_image")
    job = requests.get(f"{server.url}/jobs/{_job_of(page)}", timeout=10).json()
    assert job["parameters"]["init_image"]["mask"] is True  # the painted stroke went as a mask
    assert job["parameters"]["init_image"]["strength"] == 0.75


def test_phone_width_and_accessibility(browser, server, tmp_path):
    from axe_playwright_python.sync_playwright import Axe

    phone = Tab(browser, server.url, width=390, height=844)
    try:
        page = phone.open()
        page.fill("#prompt", "a blue ring on a yellow background")
        page.check("#loras input[type=checkbox]")
        page.click("#generate")
        expect(page.locator(".result img")).to_have_attribute("src", re.compile("^blob:"))
        # Nothing wider than the screen; the button is reachable.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert page.locator("#generate").bounding_box()["width"] > 200
        page.click("#key-toggle")
        page.locator("#init-box summary").click()
        page.set_input_files("#init-image", str(_png(tmp_path / "start.png")))
        expect(page.locator("#mask")).to_be_visible()
        results = Axe().run(page)
        assert results.violations_count == 0, results.generate_report()
    finally:
        phone.close()


def test_the_page_works_with_an_api_key(browser, keyed_server):
    tab = Tab(browser, keyed_server.url)
    try:
        page = tab.open()
        # Without a key the page says so next to the key field.
        expect(page.locator("#err-api_key")).to_contain_text("API key is required")
        expect(page.locator("#api-key")).to_be_visible()
        page.fill("#api-key", KEY)
        page.click("#key-save")
        expect(page.locator("#err-api_key")).to_have_text("Saved.")
        assert page.locator("#model option").all_inner_texts() == ["demo"]
        _generate(page, "a yellow triangle on a black background", seed=5)
        expect(page.locator(".result img")).to_have_attribute("src", re.compile("^blob:"))
        expect(page.locator(".result .seed b")).to_have_text("5")
        assert page.evaluate("localStorage.getItem('t2i.apiKey')") == KEY
        # The job is the key's: another caller without it sees nothing.
        job_id = _job_of(page)
        assert requests.get(f"{keyed_server.url}/jobs/{job_id}", timeout=10).status_code == 401
    finally:
        tab.close()


def test_docs_calls_an_endpoint_with_the_key(browser, keyed_server):
    tab = Tab(browser, keyed_server.url)
    try:
        page = tab.open()
        page.evaluate(f"localStorage.setItem('t2i.apiKey', '{KEY}')")  # as the page saves it
        page.goto(f"{keyed_server.url}/docs")
        page.locator(".opblock-get .opblock-summary-path[data-path='/models']").click()
        operation = page.locator(".opblock.is-open")
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        status = operation.locator(".live-responses-table tr.response .response-col_status")
        expect(status).to_have_text("200")
        expect(operation.locator(".curl-command")).to_contain_text(f"X-API-Key: {KEY}")
        expect(operation.locator(".live-responses-table .microlight").first).to_contain_text("demo")
        assert all(url.startswith(keyed_server.url) for _, url in tab.requests), tab.requests
    finally:
        tab.close()


def test_the_event_stream_reader_resumes_with_last_event_id(tab):
    """The page's SSE client (static/jobs.js), fed a stream split at awkward places that ends
    before its final event: it must parse every event and reconnect with Last-Event-ID."""
    page = tab.open()
    seen = page.evaluate(
        """async () => {
        const { followJob } = await import('/static/jobs.js');
        const chunks = [
          [': ping\\r\\nretry: 100\\r\\nid: 1\\nevent: queued\\ndata: {"queue_position"',
           ': 0}\\n\\nid: 5\\nevent: progress\\ndata: {"progress": {"step": 1}}\\n\\n'],
          ['id: 9\\nevent: succeeded\\ndata: {"images": ["/jobs/x/images/0"]}\\n', '\\n'],
        ];
        const asked = [];
        const api = async (path, options) => {
          asked.push([path, options.headers['Last-Event-ID'] || null]);
          const parts = chunks.shift().map((text) => new TextEncoder().encode(text));
          const pull = (c) => (parts.length ? c.enqueue(parts.shift()) : c.close());
          const body = new ReadableStream({ pull });
          return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
        };
        const events = [];
        const signal = new AbortController().signal;
        await followJob(api, 'x', (name, data) => events.push([name, data]), signal);
        return { asked, events };
    }"""
    )
    assert seen["events"] == [
        ["queued", {"queue_position": 0}],
        ["progress", {"progress": {"step": 1}}],
        ["succeeded", {"images": ["/jobs/x/images/0"]}],
    ]
    assert seen["asked"] == [["/jobs/x/events", None], ["/jobs/x/events", "5"]]
