"""What the OpenMP runtime offers: whether it is compiled in, and its default thread count."""

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int convnet_openmp_enabled(void) { return 1; }
    static int convnet_openmp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int convnet_openmp_enabled(void) { return 0; }
    static int convnet_openmp_max_threads(void) { return 1; }
    #endif
    """
    int convnet_openmp_enabled()
    int convnet_openmp_max_threads()


def openmp_enabled():
    """True when the kernels were compiled with OpenMP (otherwise they run serially)."""
    return bool(convnet_openmp_enabled())


def default_num_threads():
    """OpenMP's default team size: OMP_NUM_THREADS if set, else the number of cores."""
    return convnet_openmp_max_threads()
