"""Screenshot of the web page with images from the trained demo model, for the README.

Starts gunicorn on the demo (installed into a temporary folder), generates a few prompts the demo
understands in headless Chromium, and saves the page: `python -m bench.page_screenshot --out
.images/page.png` (`make images` runs it when chromium is installed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import backend  # noqa: F401  (hub offline before anything imports diffusers)
from backend.model.demo_trained import install_demo_loras, install_trained_demo
from bench.browser import find_chromium, launch
from bench.server import Server, server_env

# Earlier prompts fill the history; the last one is on screen, four seeds of it.
HISTORY = (
    ("a yellow star on a purple background", 11),
    ("a green ring at the top on a white background", 5),
    ("a white square on the left and an orange circle on the right, on a black background", 3),
)
SHOWN = ("a red circle on a blue background", 6)
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 120_000


def main() -> None:
    """Parse the arguments, serve the demo and save the screenshot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".images/page.png"))
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("chromium is not installed (apt-get install chromium): no screenshot taken.")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        install_trained_demo(root / "models" / "demo")
        install_demo_loras(root / "models" / "loras")
        settings = {
            "MODELS_DIR": root / "models",
            "LORAS_DIR": root / "models" / "loras",
            "JOBS_DIR": root / "jobs",
            "DEFAULT_MODEL": "demo",
            "DEVICE": "cpu",
            "API_KEYS": "",
        }
        server = Server(server_env(settings), root / "server.log")
        try:
            server.seconds_until_healthy()
            shoot(server.url, chromium, args.out)
        finally:
            server.stop()
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} KB)")


def shoot(url: str, chromium: str, out: Path) -> None:
    """Generate the prompts on the page at `url` and save what it shows to `out`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        page.wait_for_selector("body.ready")
        page.uncheck("#seed-random")
        for done, (prompt, seed) in enumerate((*HISTORY, SHOWN), start=1):
            page.fill("#prompt", prompt)
            page.fill("#seed", str(seed))
            page.fill("#num_images", "4" if prompt == SHOWN[0] else "1")
            page.click("#generate")
            # A generation enters the history once its first image has loaded.
            page.wait_for_function(f"document.querySelectorAll('#history li').length >= {done}")
            page.wait_for_function(
                "[...document.querySelectorAll('.result img')].every(i => i.complete && i.src)"
            )
        page.evaluate("window.scrollTo(0, 0)")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


if __name__ == "__main__":
    main()
