"""The instruction set the kernels were compiled for, and whether this CPU runs it.

This module alone is always compiled for the baseline instruction set, so it can be
imported first on any CPU of the architecture and refuse, with an error instead of an
illegal-instruction crash, kernels built on a newer machine (setup.py, CONVNET_PORTABLE).
"""

cdef extern from *:
    """
    #if defined(CONVNET_AVX2_FMA)
    #define CONVNET_KERNEL_ISA "avx2+fma"
    #else
    #define CONVNET_KERNEL_ISA "baseline"
    #endif

    static int convnet_cpu_has_avx2_fma(void) {
    #if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    #else
        return 0;
    #endif
    }
    """
    const char* CONVNET_KERNEL_ISA
    int convnet_cpu_has_avx2_fma()


def kernel_isa():
    """What the kernels were compiled for: "avx2+fma" (x86-64 with AVX2 and FMA) or "baseline"."""
    return CONVNET_KERNEL_ISA.decode()


def cpu_runs_kernels():
    """True when this CPU has every instruction the kernels were compiled to use."""
    return kernel_isa() == "baseline" or bool(convnet_cpu_has_avx2_fma())
