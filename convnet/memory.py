"""Reusing the memory of large arrays from one training step to the next.

Each step allocates and frees the same large arrays (activations and their gradients, megabytes
each). From the C library each is fresh memory, and the operating system maps and zero-fills every
page again when it is first touched, on every step. Inside :func:`reusing_memory`, numpy arrays of
at least MIN_BYTES come from convnet's own handler (convnet/_kernels/memory.pyx), which keeps the
blocks freed in the block and gives each to the next array of exactly its size. The Solver trains
inside it. Only arrays allocated in the block's thread (its context) use the handler; the kept
memory is freed when the last such block ends.
"""

import contextlib
import os

from convnet._kernels import memory as _memory

#: Arrays smaller than this are allocated as numpy would (the C library reuses small blocks well).
MIN_BYTES = 2**20
#: Most freed memory kept at a time: a quarter of the machine's RAM, at most this.
MAX_KEPT_BYTES = 8 * 2**30


def default_limit():
    """A quarter of the physical memory, at most MAX_KEPT_BYTES (MAX_KEPT_BYTES when unknown)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return MAX_KEPT_BYTES
    return min(MAX_KEPT_BYTES, physical // 4)


@contextlib.contextmanager
def reusing_memory(limit=None):
    """Within the block, freed arrays of >= MIN_BYTES are kept (up to ``limit`` bytes, default
    :func:`default_limit`) and reused for new arrays of the same size."""
    limit = default_limit() if limit is None else limit
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"reusing_memory: limit must be a number of bytes >= 0, got {limit!r}")
    _memory.begin(limit, MIN_BYTES)
    previous = _memory.set_handler(_memory.HANDLER)
    try:
        yield
    finally:
        _memory.set_handler(previous)
        _memory.end()


def kept_bytes():
    """Bytes of freed arrays kept for reuse right now (0 outside every reusing_memory block)."""
    return _memory.kept_bytes()
