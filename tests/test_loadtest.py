"""The load test itself runs (briefly), so `make loadtest` cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

from backend.config import ROOT


def test_a_short_load_test_passes_its_own_checks(models_dir):
    # Lenient on timing: this proves the invariants (no 5xx, no drops, jobs succeed, the server
    # exits cleanly); the figures worth quoting come from `make loadtest` on a quiet machine.
    run = subprocess.run(  # noqa: PLW1510  (the return code is asserted below)
        [sys.executable, "-m", "bench.loadtest", "--clients", "6", "--duration", "5",
         "--queue", "2", "--max-reject-ms", "1000", "--max-health-ms", "1000",
         "--max-growth", "0.5"],
        cwd=ROOT,
        env={"MODELS_DIR": str(models_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(run.stdout[: run.stdout.rindex("}") + 1])
    assert set(figures["statuses"]) <= {"200", "202", "429", "503"}
    assert figures["statuses"].get("503", 0) > 0  # six clients, two places: some were refused
    assert figures["images"] > 0
    assert run.stdout.rstrip().endswith("PASS")
