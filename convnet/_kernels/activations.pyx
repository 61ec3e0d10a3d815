"""Elementwise activations on flat C-ordered arrays: the exact (erf) GELU and its gradient.

    gelu(x)  = x * Phi(x),              Phi(x) = (1 + erf(x / sqrt(2))) / 2
    gelu'(x) = Phi(x) + x * phi(x),     phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

Each kernel is one pass, split into static chunks across threads. float32 inputs use
erff/expf, so the float32 path stays in single precision. The callers (convnet.layers)
validate shapes and dtypes and flatten the arrays first.
"""

from cython.parallel cimport prange
from libc.math cimport erf, erff, exp, expf

from convnet._kernels.floats cimport real

cdef double SQRT_HALF = 0.70710678118654752440
cdef double INV_SQRT_2PI = 0.39894228040143267794


cdef inline real normal_cdf(real x) noexcept nogil:
    """Phi(x) in the precision of real."""
    if real is float:
        return <float>0.5 * (<float>1 + erff(x * <float>SQRT_HALF))
    else:
        return 0.5 * (1 + erf(x * SQRT_HALF))


cdef inline real normal_pdf(real x) noexcept nogil:
    """phi(x) in the precision of real."""
    if real is float:
        return <float>INV_SQRT_2PI * expf(<float>-0.5 * x * x)
    else:
        return INV_SQRT_2PI * exp(-0.5 * x * x)


def gelu_forward(
    const real[::1] x,
    real[::1] out,
    int num_threads,
):
    """out = x * Phi(x); x and out have the same length."""
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in prange(n, num_threads=num_threads, schedule="static"):
            out[i] = x[i] * normal_cdf(x[i])


def gelu_backward(
    const real[::1] dout,
    const real[::1] x,
    real[::1] dx,
    int num_threads,
):
    """dx = dout * (Phi(x) + x * phi(x)); all three have the same length."""
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in prange(n, num_threads=num_threads, schedule="static"):
            dx[i] = dout[i] * (normal_cdf(x[i]) + x[i] * normal_pdf(x[i]))
