"""The documentation: README.md (the front page) and docs/*.md.

Every example in them runs, unchanged but for the address, against a real server. Examples are
the ```bash blocks that start with `curl` and every ```python block; the other bash blocks are
set-up commands (make, docker, hf download) covered by their own tests or impossible here. To
show code that must not run, fence it as ```console or ```text.

Every relative link and anchor in them resolves, and README.md stays short enough to read.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from backend.config import ROOT

pytestmark = pytest.mark.slow

README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
NOT_WRITTEN_YET: set = set()  # documents linked to before they are written (none now)
# What README.md must link to: every topic that moved out of it, and scaling out.
LINKED_FROM_README = [
    "docs/api.md",
    "docs/progress.md",
    "docs/configuration.md",
    "docs/models.md",
    "docs/memory.md",
    "docs/serving.md",
    "docs/performance.md",
    "docs/deployment.md",
    "docs/development.md",
    "docs/scaling-out.md",
    "docs/demo-model.md",
    "docs/prompts.md",
    "docs/loras.md",
    "docs/assets.md",
    "docs/images-in.md",
]
README_MAX_LINES = 150

BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)
FENCED = re.compile(r"^\s*```.*?^\s*```[^\n]*$", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# [text](target) and ![alt](target), with an optional "title" after the target.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


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


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: its text lowercased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading id in a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for heading in HEADING.findall(FENCED.sub("", path.read_text())):
        anchor = github_anchor(heading)
        found.add(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return found


def links(path: Path) -> list[str]:
    """The targets of a Markdown file's links and images, code blocks left out."""
    return LINK.findall(FENCED.sub("", path.read_text()))


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("`POST /image/generate`", "post-imagegenerate"),
        ("Jobs: submit now, fetch later", "jobs-submit-now-fetch-later"),
        ("OpenAI-compatible (`/v1`)", "openai-compatible-v1"),
        ("AUTOMATIC1111-compatible (`/sdapi/v1`)", "automatic1111-compatible-sdapiv1"),
        ("Queue, admission and deadlines", "queue-admission-and-deadlines"),
        ("`MAX_QUEUE_SIZE` and **more**", "max_queue_size-and-more"),
    ],
)
def test_anchors_follow_githubs_rules(heading, anchor):
    assert github_anchor(heading) == anchor


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_every_relative_link_and_anchor_resolves(document):
    broken = []
    for target in links(document):
        if SCHEME.match(target):
            continue  # https:, mailto: ... are not ours to check here
        path_part, _, anchor = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        if linked in NOT_WRITTEN_YET and not linked.exists():
            continue
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {name(linked)}")
    assert not broken, f"{name(document)}: " + "; ".join(broken)


def test_the_link_check_sees_links():
    # A LINK pattern that matched nothing would pass every document above.
    assert len(links(ROOT / "docs" / "api.md")) >= 10
    assert ".images/architecture.png" in links(README)


def test_readme_links_every_document():
    targets = {target.partition("#")[0] for target in links(README)}
    missing = [document for document in LINKED_FROM_README if document not in targets]
    assert not missing, f"README.md does not link {missing}"


def test_readme_stays_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines; it is the front page (at most {README_MAX_LINES}): "
        "move reference material into docs/"
    )
