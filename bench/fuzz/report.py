"""What a campaign saw: requests and statuses per endpoint, and each failure, reproducibly."""

from __future__ import annotations

import shlex
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from requests.structures import CaseInsensitiveDict

EXAMPLES_KEPT = 3  # reproductions printed per distinct failure
SHOWN_BYTES = 600  # of a body, in the printed repr


@dataclass
class Failure:
    """One request whose answer broke a promise, with everything needed to send it again."""

    source: str  # "schemathesis" or "hostile"
    endpoint: str  # `METHOD /template`
    problem: str
    method: str
    url: str
    headers: dict[str, bytes]
    body: bytes | None
    status: int | None
    response_headers: CaseInsensitiveDict[str] = field(default_factory=CaseInsensitiveDict)
    response_body: bytes = b""

    def signature(self) -> tuple[str, str, str]:
        """Failures with the same signature are one finding."""
        return self.source, self.endpoint, self.problem.split(":")[0]

    def render(self, stem: Path) -> str:
        """Method, URL, headers, body repr, a curl line and the answer, for a bug report.

        The body goes to `stem`.body and the full curl command to `stem`.sh.
        """
        body_file = stem.with_suffix(".body")
        if self.body is not None:
            body_file.write_bytes(self.body)
        command = curl(self, body_file)
        stem.with_suffix(".sh").write_text(command + "\n", errors="backslashreplace")
        lines = [f"{self.method} {_shown(self.url.encode())[2:-1]}", f"  problem: {self.problem}"]
        lines += [f"  {name}: {_shown(value)}" for name, value in self.headers.items()]
        if self.body is not None:
            lines.append(f"  body ({len(self.body)} bytes): {_shown(self.body)}")
        short = len(command) <= 2 * SHOWN_BYTES
        lines.append(f"  reproduce: {command if short else 'sh ' + str(stem.with_suffix('.sh'))}")
        status = "no answer" if self.status is None else str(self.status)
        lines.append(f"  -> {status} {self.response_headers.get('Content-Type', '')}")
        if self.response_body:
            lines.append(f"     {_shown(self.response_body)}")
        return "\n".join(lines)


def _shown(data: bytes) -> str:
    """repr of the first SHOWN_BYTES bytes, with the length when cut."""
    if len(data) <= SHOWN_BYTES:
        return repr(data)
    return f"{data[:SHOWN_BYTES]!r}... ({len(data)} bytes)"


def _quote(data: bytes) -> str:
    """A shell word for arbitrary bytes: plain when printable, else bash's $'...'."""
    text = data.decode("latin-1")
    if text.isprintable() and text.isascii():
        return shlex.quote(text)
    escaped = "".join(
        chr(b) if 32 <= b < 127 and chr(b) not in "\\'" else f"\\x{b:02x}" for b in data
    )
    return f"$'{escaped}'"


def curl(failure: Failure, body_file: Path) -> str:
    """A curl command line that sends the request again, byte for byte."""
    method = ["-I"] if failure.method == "HEAD" else ["-X", failure.method]
    words = ["curl", "-sS", "-i", "--path-as-is", *method, shlex.quote(failure.url)]
    for name, value in failure.headers.items():
        words += ["-H", _quote(name.encode() + b": " + value) if value else f"'{name};'"]
    for name in ("Accept", "Content-Type"):  # curl would add its own
        if name not in failure.headers:
            words += ["-H", f"'{name}:'"]
    if failure.body is not None:
        if len(failure.body) > 200 or b"\x00" in failure.body:  # no shell word holds a NUL
            words += ["--data-binary", "@" + shlex.quote(str(body_file))]
        else:
            words += ["--data-binary", _quote(failure.body)]
    return " ".join(words)


class Report:
    """Counts per endpoint and source, and the failures, grouped by signature."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.failures: dict[tuple[str, str, str], list[Failure]] = {}
        self.failure_counts: Counter[tuple[str, str, str]] = Counter()
        self.notes: list[str] = []

    def count(self, source: str, endpoint: str, status: int | str) -> None:
        """One answer (or error, as a string) seen by `source` for `endpoint`."""
        self.counts[endpoint][source][str(status)] += 1

    def fail(self, failure: Failure) -> None:
        """Record a failure; only the first few of each signature are kept in full."""
        key = failure.signature()
        self.failure_counts[key] += 1
        if len(kept := self.failures.setdefault(key, [])) < EXAMPLES_KEPT:
            kept.append(failure)

    @property
    def ok(self) -> bool:
        """No failure of any kind."""
        return not self.failure_counts

    def table(self) -> str:
        """Per endpoint: requests from each source and the statuses seen (markdown)."""
        rows = ["| Endpoint | schemathesis | hostile | Statuses |", "|---|---:|---:|---|"]
        for endpoint in sorted(self.counts, key=lambda e: (e.split(" ", 1)[1], e)):
            sources = self.counts[endpoint]
            total: Counter[str] = sum(sources.values(), Counter())
            statuses = ", ".join(f"{s} \u00d7 {n}" for s, n in sorted(total.items()))
            row = [endpoint, *(str(sum(sources[s].values())) for s in ("schemathesis", "hostile"))]
            rows.append(f"| `{row[0]}` | {row[1]} | {row[2]} | {statuses} |")
        return "\n".join(rows)

    def write_failures(self, folder: Path) -> str:
        """Every kept failure rendered (bodies written to `folder`), one block per signature."""
        folder.mkdir(parents=True, exist_ok=True)
        blocks = []
        for number, (key, kept) in enumerate(sorted(self.failures.items()), 1):
            source, endpoint, problem = key
            blocks.append(
                f"[{number}] {source}: {endpoint}: {problem} ({self.failure_counts[key]} times)"
            )
            for index, failure in enumerate(kept):
                blocks.append(failure.render(folder / f"failure-{number}-{index}"))
        return "\n".join(blocks)
