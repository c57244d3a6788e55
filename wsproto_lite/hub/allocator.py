"""Keep a long-running hub's RSS flat: fixed glibc malloc thresholds.

glibc raises its mmap threshold each time a large block is freed, so after a while buffers of 64 KiB and
more (large frames, history pages) come from the heap instead of their own mappings, and the heap's
high-water mark stays in RSS after they are freed. The hub soak showed it: +40 MiB over 150 s at a level
load, not given back when the clients left; with fixed thresholds the same run stays within 2 MiB and
returns memory when connections go (benchmarks/RESULTS-hub-soak.md). Setting the thresholds explicitly
turns glibc's adjustment off. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["fix_malloc_thresholds"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 * 1024  # blocks this large get their own mapping, returned to the system when freed
TRIM_THRESHOLD = 128 * 1024  # free memory at the top of the heap beyond this is returned at once


def fix_malloc_thresholds() -> bool:
    """Set fixed mmap and trim thresholds if the C library is glibc; True when they were set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
