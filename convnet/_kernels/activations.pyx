"""Elementwise activations on flat C-ordered arrays: the exact (erf) GELU and its gradient.

    gelu(x)  = x * Phi(x),              Phi(x) = (1 + erf(x / sqrt(2))) / 2
    gelu'(x) = Phi(x) + x * phi(x),     phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

Each kernel is one pass, split into static chunks across threads; the maths is in gelu.pxd
(shared with the batch norm kernels, which fuse it). The callers (convnet.layers) validate
shapes and dtypes and flatten the arrays first.
"""

from cython.parallel cimport prange

from convnet._kernels.floats cimport real
from convnet._kernels.gelu cimport gelu, gelu_slope


def gelu_forward(
    const real[::1] x,
    real[::1] out,
    int num_threads,
):
    """out = x * Phi(x); x and out have the same length."""
    cdef Py_ssize_t i, n = x.shape[0]
    with nogil:
        for i in prange(n, num_threads=num_threads, schedule="static"):
            out[i] = gelu(x[i])


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
            dx[i] = dout[i] * gelu_slope(x[i])
