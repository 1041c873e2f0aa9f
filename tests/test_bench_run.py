"""`make bench` in miniature (the demo model, tiny counts), so the benchmark cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from backend.config import ROOT


def _smoke_run(module: str, models_dir, tmp_path) -> subprocess.CompletedProcess:
    """`python -m <module> --smoke` on the demo model, results into tmp_path; must succeed."""
    run = subprocess.run(  # noqa: PLW1510  (the return code is asserted below)
        [sys.executable, "-m", module, "--smoke", "--models-dir", str(models_dir),
         "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def test_the_benchmark_smoke_run_writes_its_table_json_and_plot(models_dir, tmp_path):
    run = _smoke_run("bench.run", models_dir, tmp_path)
    (report_path,) = tmp_path.glob("*-cpu.json")
    report = json.loads(report_path.read_text())
    assert set(report["ratios"]) == {
        "overhead", "single_latency", "throughput_vs_naive_min", "cold_start", "memory",
        "rejection_p99_ms", "scale_out_2_workers", "queue_hop_added_p50_ms",
    }  # fmt: skip
    assert report["versions"]["torch"] and report["device"] == "cpu"
    assert [level["clients"] for level in report["results"]["throughput"]] == [1, 2]
    assert all(level["images_per_s"] > 0 for level in report["results"]["naive_throughput"])
    with Image.open(report_path.with_suffix(".png")) as plot:
        assert plot.format == "PNG"
    assert "throughput_vs_naive_min" in run.stdout  # the printed table
    scale_out = report["results"]["scale_out"]
    if "skipped" not in scale_out:  # a machine without redis-server says so instead
        assert [level["workers"] for level in scale_out["throughput"]] == [1, 2]
        assert all(level["images_per_s"] > 0 for level in scale_out["throughput"])
        assert scale_out["recovery"]["attempt"] == 2  # the killed run was finished elsewhere
        assert scale_out["hop"]["celery_p50_ms"] > 0
        assert "SIGKILL mid-job" in run.stdout


def test_the_speed_benchmark_smoke_run_compares_settings(models_dir, tmp_path):
    run = _smoke_run("bench.speed", models_dir, tmp_path)
    (report_path,) = tmp_path.glob("*-cpu-speed.json")
    report = json.loads(report_path.read_text())
    variants = report["variants"]
    assert set(variants) == {"baseline", "prompt_cache", "defaults"}
    # Each server said what it applied: nothing in the baseline, the CPU defaults as shipped.
    assert variants["baseline"]["applied"].startswith("channels_last=none")
    assert variants["defaults"]["applied"].startswith("channels_last=vae")
    assert all(row["latency_s"] > 0 for row in variants.values())
    assert "gain" in run.stdout  # the printed table
