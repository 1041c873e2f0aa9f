"""The pictures in docs/ are drawn from their sources: `make images` must reproduce them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from backend.config import ROOT

SOURCES = sorted((ROOT / "docs" / "diagrams").glob("*.toml"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.stem)
def test_the_committed_picture_is_what_its_source_draws(source, tmp_path):
    draw = [sys.executable, str(ROOT / "docs" / "diagrams" / "draw.py"), str(source)]
    subprocess.run([*draw, "--out", str(tmp_path)], check=True, capture_output=True)
    drawn = Image.open(tmp_path / f"{source.stem}.png")
    committed = Image.open(ROOT / ".images" / f"{source.stem}.png")
    with drawn, committed:
        assert drawn.size == committed.size
        same = drawn.tobytes() == committed.tobytes()
        assert same, f"run `make images` after editing {source.name}"


def test_every_diagram_is_shown_in_the_docs():
    text = "".join(path.read_text() for path in (ROOT / "docs").glob("*.md"))
    for source in SOURCES:
        assert f"../.images/{source.stem}.png" in text
