"""Spatial batch normalisation on NCHW data, one channel per parallel task.

Per channel c the M = N * H * W values are N contiguous blocks of H * W, so no
transposed copy is ever made. Sums are accumulated in float64 with four
independent accumulators (breaking the add latency chain), and the variance is
the two-pass sum of squared deviations, which stays accurate for float32 inputs.
One channel (at most a few hundred KB) is read from memory once and re-read
from cache by the later passes. The callers (convnet.conv_layers) validate
every shape before calling.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt

ctypedef fused real:
    float
    double


cdef inline double block_sum(const real* a, Py_ssize_t length) noexcept nogil:
    """Sum of a[0:length] in float64."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= length:
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        i += 4
    while i < length:
        s0 += a[i]
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double block_squared_deviation(const real* a, Py_ssize_t length, double centre) noexcept nogil:
    """Sum of (a[i] - centre)^2 over a[0:length] in float64."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0, d0, d1, d2, d3
    cdef Py_ssize_t i = 0
    while i + 4 <= length:
        d0 = a[i] - centre
        d1 = a[i + 1] - centre
        d2 = a[i + 2] - centre
        d3 = a[i + 3] - centre
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        i += 4
    while i < length:
        d0 = a[i] - centre
        s0 += d0 * d0
        i += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double block_dot_deviation(const real* dy, const real* a, Py_ssize_t length,
                                       double centre) noexcept nogil:
    """Sum of dy[i] * (a[i] - centre) over [0:length] in float64."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t i = 0
    while i + 4 <= length:
        s0 += dy[i] * (a[i] - centre)
        s1 += dy[i + 1] * (a[i + 1] - centre)
        s2 += dy[i + 2] * (a[i + 2] - centre)
        s3 += dy[i + 3] * (a[i + 3] - centre)
        i += 4
    while i < length:
        s0 += dy[i] * (a[i] - centre)
        i += 1
    return (s0 + s1) + (s2 + s3)


def batchnorm_train_forward(const real[:, :, :, ::1] x, const double[::1] gamma, const double[::1] beta,
                            double eps, real[:, :, :, ::1] out,
                            double[::1] mean, double[::1] var, double[::1] inv_std, int num_threads):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta with per-channel batch statistics.

    x, out: (N, C, H, W); gamma, beta: (C,). mean, var (biased) and inv_std (C,) are written.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n, i
    cdef double count = <double>(N * plane), total, m
    cdef real centre, scale, shift
    cdef const real* src
    cdef real* dst
    with nogil:
        for c in prange(C, num_threads=num_threads, schedule="static"):
            total = 0
            for n in range(N):
                total = total + block_sum(&x[n, c, 0, 0], plane)
            m = total / count
            total = 0
            for n in range(N):
                total = total + block_squared_deviation(&x[n, c, 0, 0], plane, m)
            mean[c] = m
            var[c] = total / count
            inv_std[c] = 1.0 / sqrt(total / count + eps)
            # Subtract the mean before scaling: folding it into the shift would
            # cancel catastrophically in float32 when |mean| >> std.
            centre = <real>m
            scale = <real>(gamma[c] * inv_std[c])
            shift = <real>beta[c]
            for n in range(N):
                src = &x[n, c, 0, 0]
                dst = &out[n, c, 0, 0]
                for i in range(plane):
                    dst[i] = (src[i] - centre) * scale + shift


def channel_affine(const real[:, :, :, ::1] x, const double[::1] scale, const double[::1] shift,
                   real[:, :, :, ::1] out, int num_threads):
    """out[n, c] = x[n, c] * scale[c] + shift[c]: batch norm in test mode, in one pass."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n, i
    cdef real a, b
    cdef const real* src
    cdef real* dst
    with nogil:
        for c in prange(C, num_threads=num_threads, schedule="static"):
            a = <real>scale[c]
            b = <real>shift[c]
            for n in range(N):
                src = &x[n, c, 0, 0]
                dst = &out[n, c, 0, 0]
                for i in range(plane):
                    dst[i] = src[i] * a + b


def batchnorm_backward(const real[:, :, :, ::1] dout, const real[:, :, :, ::1] x,
                       const double[::1] gamma, const double[::1] mean, const double[::1] inv_std,
                       bint batch_statistics, real[:, :, :, ::1] dx,
                       double[::1] dgamma, double[::1] dbeta, int num_threads):
    """Fused per-channel backward pass; dx (N, C, H, W), dgamma and dbeta (C,) are written.

    With xhat = (x - mean) * inv_std and M values per channel:
      dbeta = sum(dout), dgamma = sum(dout * xhat),
      dx = gamma * inv_std * (dout - dbeta / M - xhat * dgamma / M)   (batch statistics),
      dx = gamma * inv_std * dout                                       (running statistics).
    Both are computed as dx = a * dout + b * (x - mean) + d in one fused pass.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n, i
    cdef double count = <double>(N * plane), sum_dy, sum_dy_dev, g_istd
    cdef const real* dy_block
    cdef const real* x_block
    cdef real* dx_block
    cdef real a, b, d, centre
    with nogil:
        for c in prange(C, num_threads=num_threads, schedule="static"):
            sum_dy = 0
            sum_dy_dev = 0
            for n in range(N):
                sum_dy = sum_dy + block_sum(&dout[n, c, 0, 0], plane)
                sum_dy_dev = sum_dy_dev + block_dot_deviation(&dout[n, c, 0, 0], &x[n, c, 0, 0],
                                                              plane, mean[c])
            dbeta[c] = sum_dy
            dgamma[c] = sum_dy_dev * inv_std[c]
            g_istd = gamma[c] * inv_std[c]
            a = <real>g_istd
            centre = <real>mean[c]
            if batch_statistics:
                # dx = g_istd * (dy - sum_dy/M - (x - mean) * inv_std^2 * sum_dy_dev / M)
                b = <real>(-g_istd * inv_std[c] * inv_std[c] * sum_dy_dev / count)
                d = <real>(-g_istd * sum_dy / count)
            else:
                b = 0
                d = 0
            for n in range(N):
                dy_block = &dout[n, c, 0, 0]
                x_block = &x[n, c, 0, 0]
                dx_block = &dx[n, c, 0, 0]
                for i in range(plane):
                    dx_block[i] = a * dy_block[i] + b * (x_block[i] - centre) + d
