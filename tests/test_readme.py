"""The documentation: README.md (the front page) and docs/*.md.

Every example in them runs, unchanged but for the address, against a real server. Examples are
the ```bash blocks that start with `curl` and every ```python block; the other bash blocks are
set-up commands (make, docker, hf download) covered by their own tests or impossible here. To
show code that must not run, fence it as ```console or ```text.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from backend.config import ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


EXAMPLES = [
    (name(path), language, code)
    for path in DOCUMENTS
    for language, code in BLOCK.findall(path.read_text())
    if language == "python" or code.lstrip().startswith("curl")
]


def test_the_docs_have_examples_of_every_api():
    text = "\n".join(code for _, _, code in EXAMPLES)
    for needle in ("/image/generate", "/generate", "/generate-image", "/models", "/v1",
                   "/sdapi/v1/txt2img", "/ping", "/health", "/openapi.json", "/jobs"):  # fmt: skip
        assert needle in text, needle
    assert any(document == "README.md" for document, _, _ in EXAMPLES), "README's quick start"


def check_outputs(folder) -> None:
    """Whatever files an example wrote must be what their names say."""
    for path in folder.iterdir():
        if path.suffix in (".png", ".webp", ".jpeg"):
            with Image.open(path) as image:
                image.load()
                assert (
                    image.format.lower()
                    == {".png": "png", ".webp": "webp", ".jpeg": "jpeg"}[path.suffix]
                )
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None
                assert all(name.endswith(".png") for name in archive.namelist())


@pytest.mark.parametrize(
    ("document", "language", "code"),
    EXAMPLES,
    ids=[f"{doc}-{i}-{lang}" for i, (doc, lang, _) in enumerate(EXAMPLES)],
)
def test_readme_example(api_server, tmp_path, document, language, code):
    code = code.replace("http://localhost:5000", api_server.url)
    if language == "bash":
        # Plain curl exits 0 on a 4xx: make every example prove it succeeded.
        command = [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            code.replace("curl ", "curl -sS --fail-with-body "),
        ]
    else:
        command = [sys.executable, "-c", code]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, (
        f"{document}\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    check_outputs(tmp_path)
    if language == "bash" and "--output" not in code:
        # Printed answers are JSON or pong.
        for chunk in filter(None, re.split(r"(?<=[}\]])(?=[{\[])|\n", result.stdout)):
            if chunk != "pong":
                json.load(io.StringIO(chunk))
