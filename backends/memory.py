"""Memory reused between training steps, through the C allocator.

Every step of a training loop allocates the same large arrays again: activations, patch
matrices, gradients. glibc's ``malloc`` serves each one above 32 MiB with a fresh ``mmap``
and gives it back with ``munmap`` when NumPy frees it, so every step page-faults all its
memory in again (measured: about a tenth of a PyNet step on the CPU, as kernel time).
:func:`reuse_freed_memory` makes ``malloc`` serve large blocks from its heap and keep freed
memory there, so the next step's arrays of the same sizes land in pages already mapped, in
every backend and with no change to what the kernels return. PyTorch's CPU tuning guides
reach the same end by swapping in jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_ALL = 2**31 - 1  # the largest int: never trim the heap's free top back to the OS


def reuse_freed_memory() -> bool:
    """Keep freed memory in this process's heap for the next allocations of the same size
    (glibc only; elsewhere a no-op). Returns whether the allocator took the settings. The
    process's resident size stays at its peak instead of dropping between steps."""
    if not sys.platform.startswith("linux"):
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # absent from musl, for one
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_ALL))
