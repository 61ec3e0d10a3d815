"""A numpy memory handler that keeps freed large blocks for the next array of the same size.

A training step allocates and frees the same large arrays (activations, their gradients)
every iteration. From the system allocator each of them is fresh memory: the kernel maps and
zero-fills every page again on first touch. This handler keeps up to `limit` bytes of freed
blocks of at least `min_bytes` while at least one caller is inside a begin()/end() span, and
hands a kept block to the next request of exactly its size. Smaller blocks, calloc and
realloc go straight to the C library. Blocks of 4 MiB and more are advised to use huge pages
on Linux, as numpy's own allocator does. convnet.memory is the Python side.
"""

cimport numpy as cnp
from cpython.pycapsule cimport PyCapsule_New

cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #include "pythread.h"
    #include "numpy/ndarraytypes.h"
    #ifdef __linux__
    #include <sys/mman.h>
    #endif

    #define CONVNET_SLOTS 256
    #define CONVNET_HUGE_BYTES ((size_t)1 << 22)

    typedef struct { void *ptr; size_t size; } convnet_block;

    static convnet_block convnet_kept[CONVNET_SLOTS];
    static int convnet_kept_count = 0;
    static size_t convnet_kept_bytes = 0;
    static size_t convnet_limit = 0, convnet_min_bytes = (size_t)1 << 20;
    static int convnet_spans = 0;  /* callers inside begin() ... end() */
    static PyThread_type_lock convnet_lock = NULL;

    static void *convnet_fresh(size_t size) {
        void *p = malloc(size);
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (p != NULL && size >= CONVNET_HUGE_BYTES) {
            size_t start = ((size_t)p + 4095) & ~(size_t)4095;
            madvise((void *)start, size - (start - (size_t)p), MADV_HUGEPAGE);
        }
    #endif
        return p;
    }

    static void *convnet_malloc(void *ctx, size_t size) {
        if (size >= convnet_min_bytes) {
            PyThread_acquire_lock(convnet_lock, WAIT_LOCK);
            for (int i = convnet_kept_count - 1; i >= 0; i--) {
                if (convnet_kept[i].size == size) {
                    void *p = convnet_kept[i].ptr;
                    convnet_kept[i] = convnet_kept[--convnet_kept_count];
                    convnet_kept_bytes -= size;
                    PyThread_release_lock(convnet_lock);
                    return p;
                }
            }
            PyThread_release_lock(convnet_lock);
            return convnet_fresh(size);
        }
        return malloc(size ? size : 1);
    }

    static void *convnet_calloc(void *ctx, size_t nelem, size_t elsize) {
        return calloc(nelem ? nelem : 1, elsize ? elsize : 1);
    }

    static void *convnet_realloc(void *ctx, void *ptr, size_t new_size) {
        return realloc(ptr, new_size ? new_size : 1);
    }

    static void convnet_free(void *ctx, void *ptr, size_t size) {
        if (ptr == NULL) {
            return;
        }
        if (size >= convnet_min_bytes) {
            PyThread_acquire_lock(convnet_lock, WAIT_LOCK);
            if (convnet_spans > 0 && convnet_kept_count < CONVNET_SLOTS && convnet_kept_bytes + size <= convnet_limit) {
                convnet_kept[convnet_kept_count].ptr = ptr;
                convnet_kept[convnet_kept_count].size = size;
                convnet_kept_count++;
                convnet_kept_bytes += size;
                PyThread_release_lock(convnet_lock);
                return;
            }
            PyThread_release_lock(convnet_lock);
        }
        free(ptr);
    }

    static PyDataMem_Handler convnet_handler = {
        "convnet_reusing_allocator", 1,
        {NULL, convnet_malloc, convnet_calloc, convnet_realloc, convnet_free}
    };

    static int convnet_memory_init(void) {
        convnet_lock = PyThread_allocate_lock();
        return convnet_lock != NULL;
    }

    /* Free every kept block; the number of bytes freed. */
    static size_t convnet_release(void) {
        size_t freed;
        PyThread_acquire_lock(convnet_lock, WAIT_LOCK);
        freed = convnet_kept_bytes;
        for (int i = 0; i < convnet_kept_count; i++) {
            free(convnet_kept[i].ptr);
        }
        convnet_kept_count = 0;
        convnet_kept_bytes = 0;
        PyThread_release_lock(convnet_lock);
        return freed;
    }

    /* Enter (+1) or leave (-1) a span; leaving the last one frees the kept blocks. */
    static void convnet_span(int change, size_t limit, size_t min_bytes) {
        int last;
        PyThread_acquire_lock(convnet_lock, WAIT_LOCK);
        convnet_spans += change;
        if (change > 0) {
            convnet_limit = limit;
            convnet_min_bytes = min_bytes;
        }
        last = convnet_spans == 0;
        PyThread_release_lock(convnet_lock);
        if (last) {
            convnet_release();
        }
    }

    static size_t convnet_kept_total(void) {
        size_t total;
        PyThread_acquire_lock(convnet_lock, WAIT_LOCK);
        total = convnet_kept_bytes;
        PyThread_release_lock(convnet_lock);
        return total;
    }
    """
    ctypedef struct PyDataMem_Handler:
        pass
    PyDataMem_Handler convnet_handler
    int convnet_memory_init()
    size_t convnet_release()
    void convnet_span(int change, size_t limit, size_t min_bytes)
    size_t convnet_kept_total()

if not convnet_memory_init():
    raise MemoryError("convnet._kernels.memory: could not allocate its lock")

#: The handler, as a capsule like the ones numpy keeps on each array it allocates.
HANDLER = PyCapsule_New(&convnet_handler, "mem_handler", NULL)


def set_handler(handler):
    """Make ``handler`` (a capsule, or None for numpy's default) allocate the new arrays of the current
    context (thread or task); returns the handler it replaces."""
    return PyDataMem_SetHandler(handler)


def begin(size_t limit, size_t min_bytes):
    """Enter a span: from now on freed blocks of >= min_bytes are kept, up to limit bytes in all."""
    convnet_span(1, limit, min_bytes)


def end():
    """Leave a span; when no span is left, the kept blocks are freed."""
    convnet_span(-1, 0, 0)


def release():
    """Free every kept block now; returns how many bytes that was."""
    return convnet_release()


def kept_bytes():
    """Bytes of freed blocks kept for reuse right now."""
    return convnet_kept_total()
