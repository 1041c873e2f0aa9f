"""The malloc tuning for CPU devices: a worker thread's big blocks stay mapped for the next run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backend.config import ROOT

# In a fresh interpreter: the tuning is process-wide, and this one must stay as it was.
PROBE = """
import resource, sys, threading
from backend.model import host_memory
if sys.argv[1] == "tuned":
    assert host_memory.tune_for_cpu_inference()
faults = []
def run():
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        blocks = [bytearray(64 << 20) for _ in range(3)]  # like one run's activations
        del blocks
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(max(faults[1:]))
"""


def _faults_after_the_first_run(mode: str) -> int:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(run.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_tuned_worker_thread_reuses_its_memory_instead_of_faulting_it_in_again():
    untuned = _faults_after_the_first_run("untuned")
    tuned = _faults_after_the_first_run("tuned")
    pages = 3 * (64 << 20) // 4096
    assert untuned >= pages // 2  # glibc hands the blocks back and faults them in every time
    assert tuned < pages // 20  # tuned: they stay mapped and are reused
