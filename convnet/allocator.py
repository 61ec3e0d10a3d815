"""Let freed memory be reused by the next training step instead of returned to the OS.

A training step allocates and frees the same large activation arrays (megabytes each)
every iteration. With glibc's defaults many of them are served by fresh mmap()
mappings, or by heap memory that free() has just trimmed away, so each step pays a
page fault and the kernel's zero-filling for every 4 KiB page it touches. On the
cifar10_convnet model that was about 16% of a training step on 2 cores (see
docs/performance.md). Raising glibc's mmap and trim thresholds keeps those pages
mapped in the heap, where the next step finds them.

The cost is that the process keeps its peak memory until it exits. Set
CONVNET_MALLOC_TUNING=0 before importing convnet to keep the C library's defaults.
Elsewhere than glibc (macOS, musl) nothing is changed.
"""

import ctypes
import os
import sys

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

#: Arrays up to this size come from the heap rather than from their own mmap().
MMAP_THRESHOLD_BYTES = 1 << 30
#: The heap is grown this much beyond each request, so growing it is rare.
TOP_PAD_BYTES = 64 << 20
#: Free memory at the top of the heap is never handed back (the largest value mallopt takes).
TRIM_THRESHOLD_BYTES = (1 << 31) - 1


def tune_malloc():
    """Apply the settings above through glibc's mallopt(); True when all of them took effect."""
    if os.environ.get("CONVNET_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # musl has a mallopt too, but it does nothing
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = [(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
                (_M_TOP_PAD, TOP_PAD_BYTES)]
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
