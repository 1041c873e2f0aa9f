"""bench/gpu-check.sh stops at once, with one clear line, where it cannot run: no CUDA, no wheels.

The script itself is for a GPU host (docs/performance.md, "On a GPU"); here it must fail fast,
not hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from backend.config import ROOT

SCRIPT = ROOT / "bench" / "gpu-check.sh"
HAS_GPU = bool(
    shutil.which("nvidia-smi")
    or Path("/usr/local/nvidia/bin/nvidia-smi").exists()
    or list(Path("/dev").glob("nvidia[0-9]*"))
)


def run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """The script from another folder, results meant for tmp_path/out; it must end within 60 s."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=tmp_path,
        env={**os.environ, "OUT": str(tmp_path / "out"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, time.monotonic() - started


def fake_tools(tmp_path: Path, python_exit: int, wheels: tuple[str, ...] = ()) -> dict[str, str]:
    """A PATH with an nvidia-smi, a 'python' that answers the CUDA probe with python_exit, and
    a wheel folder holding (empty) files of those names."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho fake\n")
    (bin_dir / "python").write_text(f"#!/bin/sh\nexit {python_exit}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in wheels:
        (folder / name).touch()
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GPU_PYTHON": str(bin_dir / "python"),
        "GPU_CHECK_WHEELS": str(folder),
    }


def assert_refused(result: subprocess.CompletedProcess, seconds: float, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert seconds < 30
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, saying why
    assert line.startswith("gpu-check: ")
    for needle in needles:
        assert needle in line


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU: the script would run")
def test_without_cuda_it_stops_at_once_with_one_clear_line(tmp_path):
    result, seconds = run_script(tmp_path)
    assert_refused(result, seconds, "no CUDA GPU", "GPU host")
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_torch_without_cuda_is_refused_as_clearly(tmp_path):
    result, seconds = run_script(tmp_path, **fake_tools(tmp_path, python_exit=3))
    assert_refused(result, seconds, "no CUDA GPU", "torch.cuda.is_available() is False")
    assert not (tmp_path / "out").exists()


def test_without_wheels_it_says_to_run_gpu_wheels_first(tmp_path):
    result, seconds = run_script(tmp_path, **fake_tools(tmp_path, python_exit=0))
    assert_refused(result, seconds, "no wheels", "../shared/tools/gpu-wheels")
    assert not (tmp_path / "out").exists()


def test_two_versions_of_one_wheel_are_refused_before_installing(tmp_path):
    wheels = ("Flask-3.1.3-py3-none-any.whl", "flask-3.1.2-py3-none-any.whl",
              "gunicorn-27.0.1-py3-none-any.whl")  # fmt: skip
    result, seconds = run_script(tmp_path, **fake_tools(tmp_path, python_exit=0, wheels=wheels))
    assert_refused(result, seconds, "two versions of flask", "../shared/tools/gpu-wheels")
    assert not (tmp_path / "out").exists()
