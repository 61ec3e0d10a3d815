"""Optional: let freed memory be reused by the next training step instead of returned to the OS.

A training step allocates and frees the same large activation arrays (megabytes each)
every iteration. With glibc's defaults, free() often trims such memory away, and the
next step pays a page fault and the kernel's zero-filling for every 4 KiB page it
touches again. Raising glibc's mmap and trim thresholds keeps those pages mapped in
the heap, where the next step finds them. On the cifar10_convnet model (2 cores) that
halved the batch-norm time and made a step about 5% faster, but an isolated
small-channel convolution benchmark ran slower (docs/performance.md). So it is
opt-in: set CONVNET_MALLOC_TUNING=1 before importing convnet, or call
:func:`tune_malloc`. The process then keeps its peak memory until it exits.
Elsewhere than glibc (macOS, musl) nothing is changed.
"""

import ctypes
import os
import sys

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Arrays up to this size come from the heap rather than from their own mmap().
MMAP_THRESHOLD_BYTES = 1 << 30
#: Free memory at the top of the heap is never handed back (the largest value mallopt takes).
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


def tune_malloc():
    """Apply the settings above through glibc's mallopt(); True when all of them took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # musl has a mallopt too, but it does nothing
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = [(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)]
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
