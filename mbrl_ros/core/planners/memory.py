"""Process-level allocator tuning that keeps planning free of page faults (glibc only).

Planning allocates and frees the same few-megabyte tensors thousands of times per second.
With glibc's default policy those blocks are mmap-ed and unmapped (or trimmed off the heap)
each time, so every call pays fresh page faults: measured here, about 10k minor faults and
roughly a quarter of the planning time of one PDDM-size MPPI step. Raising the mmap and
trim thresholds keeps the blocks on the heap and reuses them. Call once at process start
(e.g. in the planner node's main); it affects the whole process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc_for_planning(
    mmap_threshold: int = 64 << 20,
    trim_threshold: int = 128 << 20,
) -> bool:
    """Set glibc's mmap/trim thresholds (bytes); True if applied, False if not glibc."""
    if mmap_threshold < 0 or trim_threshold < 0:
        raise ValueError("allocator thresholds must be non-negative")
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
