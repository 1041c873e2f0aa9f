"""Headless Chromium for the page's browser tests and screenshot: Debian's `chromium` package,
driven by Playwright through `executable_path` (Playwright's own browser download is not used)."""

from __future__ import annotations

import os
import shutil

CHROMIUM_ENV = "CHROMIUM_PATH"  # where chromium is, if not on PATH
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# Containers often give /dev/shm only 64 MB: Chromium then writes its shared memory to /tmp.
LAUNCH_ARGS = ("--disable-dev-shm-usage",)


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM_PATH, else the first of CANDIDATES on PATH."""
    if given := os.environ.get(CHROMIUM_ENV):
        return given if os.access(given, os.X_OK) else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def launch(playwright: object, executable: str) -> object:
    """A headless Chromium browser from a started `sync_playwright()`."""
    return playwright.chromium.launch(executable_path=executable, args=list(LAUNCH_ARGS))
