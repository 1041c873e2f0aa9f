"""Tuning glibc's malloc for CPU inference.

A pipeline run on the CPU allocates and frees gigabytes of activations. Untuned, glibc serves
the big blocks with mmap and unmaps them when freed (a thread on an arena of its own does so for
every block over 64 MB, whatever the settings), so each call page-faults its activations in
again. Measured on the SD-Turbo-sized bench model (256x256, one step, two cores): a plain call
faults 790,000 pages and takes 4.2 s; through the server with this tuning, no faults and 3.3 s.
One arena, no mmap for large blocks, and a high trim threshold keep that memory mapped and
reused.

glibc ties a thread to an arena at the thread's first allocation, so the tuning must come
before the process starts its threads: the engine applies it first thing in `Engine.start`.
Applied later, on the device thread (as it once was), the server still faulted 300,000 pages
and took 3.6 s per request.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's own default
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_DEFAULT_MMAP_MAX = 65536  # glibc's own default
# Free memory above this at the top of the heap goes back to the kernel: an unloaded model's
# weights are returned, one image's activations are kept for the next.
TRIM_THRESHOLD = 1 << 30

_tuned = False
_mallopt = None


def tune_for_cpu_inference() -> bool:
    """Apply the tuning (once per process); False where the C library is not glibc.

    The one-arena part applies to threads that allocate for the first time after it: call it
    before starting the threads that run pipelines.
    """
    global _tuned, _mallopt  # noqa: PLW0603  (process-wide by nature: malloc is)
    if _tuned:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt, nothing to tune
        return False
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    _tuned = all(_mallopt(option, value) == 1 for option, value in settings)
    if not _tuned:
        log.warning("malloc tuning for CPU inference was refused; CPU runs may be slower")
    return _tuned


@contextlib.contextmanager
def mapped_blocks() -> Iterator[None]:
    """Large blocks mmapped again while in the block (loading weights): weights live until
    unloaded, and the heap would keep the loader's short-lived copies as holes it cannot trim."""
    if not _tuned or _mallopt is None:
        yield
        return
    _mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    try:
        yield
    finally:
        _mallopt(_M_MMAP_MAX, 0)


def tuned() -> bool:
    """Whether the tuning is in force in this process."""
    return _tuned


def restore_defaults() -> None:
    """Large blocks mmapped and freed memory trimmed again, as glibc does by default: for a
    process that turned out to have no CPU device (a GPU server would otherwise keep host
    copies of weights it moved). Threads stay on the one arena; they allocate little there."""
    global _tuned  # noqa: PLW0603
    if not _tuned or _mallopt is None:
        return
    _mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
    _mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
    _tuned = False
