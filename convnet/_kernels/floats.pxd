# The floating-point types every kernel is compiled for. Each .pyx cimports this one
# declaration, so a kernel exists once and Cython specialises it for both types.

ctypedef fused real:
    float
    double
