"""How many threads convnet's kernels and BLAS may use.

The Cython kernels pass this count to every OpenMP parallel loop explicitly, so
it holds whichever Python thread calls them. The default follows OMP_NUM_THREADS
(else the number of cores). :func:`set_num_threads` also caps numpy's BLAS,
which runs the matrix products inside the convolution and affine layers.
"""

from threadpoolctl import threadpool_limits

from convnet._kernels import threads as _omp

_num_threads = max(1, _omp.default_num_threads())


def set_num_threads(n):
    """Use ``n`` threads (n >= 1) in the kernels and in BLAS from now on."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects an integer n >= 1, got {n!r}")
    _num_threads = n
    threadpool_limits(limits=n, user_api="blas")


def get_num_threads():
    """The number of threads the kernels use (1 when built without OpenMP)."""
    return _num_threads if _omp.openmp_enabled() else 1
