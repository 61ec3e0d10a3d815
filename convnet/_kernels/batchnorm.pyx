"""Spatial batch and group normalisation on NCHW data.

Batch norm runs one channel per parallel task; group norm one (image, group) per
task, whose C/G channels are a single contiguous block of (C/G) * H * W values.

Per channel c the M = N * H * W values are N contiguous blocks of H * W, so no
transposed copy is ever made. Sums are accumulated in float64 in LANES
independent partial sums (vectorisable, and off the add latency chain), and the variance is
the two-pass sum of squared deviations, which stays accurate for float32 inputs.
One channel (at most a few hundred KB) is read from memory once and re-read
from cache by the later passes. The callers (convnet.conv_layers) validate
every shape before calling.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt

from convnet._kernels.floats cimport real
from convnet._kernels.gelu cimport gelu, gelu_slope

# The activation fused onto a batch norm's output (the ``activation`` argument of the kernels).
cdef enum:
    NO_ACTIVATION = 0
    RELU = 1
    GELU = 2


# Independent float64 partial sums per reduction. Each lane is its own sum (no reassociation), so
# the compiler may run them as vectors, and several vectors break the add latency chain.
cdef enum:
    LANES = 16


cdef inline double lanes_total(double* s) noexcept nogil:
    """The sum of s[0:LANES], pairwise."""
    cdef int width = LANES // 2, k
    while width >= 1:
        for k in range(width):
            s[k] = s[k] + s[k + width]
        width = width // 2
    return s[0]


cdef inline double block_sum(const real* a, Py_ssize_t length) noexcept nogil:
    """Sum of a[0:length] in float64."""
    cdef double s[LANES]
    cdef Py_ssize_t i = 0
    cdef int k
    for k in range(LANES):
        s[k] = 0
    while i + LANES <= length:
        for k in range(LANES):
            s[k] += a[i + k]
        i += LANES
    while i < length:
        s[0] += a[i]
        i += 1
    return lanes_total(s)


cdef inline double block_squared_deviation(const real* a, Py_ssize_t length, double centre) noexcept nogil:
    """Sum of (a[i] - centre)^2 over a[0:length] in float64."""
    cdef double s[LANES]
    cdef double d
    cdef Py_ssize_t i = 0
    cdef int k
    for k in range(LANES):
        s[k] = 0
    while i + LANES <= length:
        for k in range(LANES):
            d = a[i + k] - centre
            s[k] += d * d
        i += LANES
    while i < length:
        d = a[i] - centre
        s[0] += d * d
        i += 1
    return lanes_total(s)


cdef inline double block_dot_deviation(const real* dy, const real* a, Py_ssize_t length,
                                       double centre) noexcept nogil:
    """Sum of dy[i] * (a[i] - centre) over [0:length] in float64."""
    cdef double s[LANES]
    cdef Py_ssize_t i = 0
    cdef int k
    for k in range(LANES):
        s[k] = 0
    while i + LANES <= length:
        for k in range(LANES):
            s[k] += dy[i + k] * (a[i + k] - centre)
        i += LANES
    while i < length:
        s[0] += dy[i] * (a[i] - centre)
        i += 1
    return lanes_total(s)


cdef inline void normalize_block(const real* x, real* out, Py_ssize_t length, real centre, real scale,
                                 real shift, int activation) noexcept nogil:
    """out = (x - centre) * scale + shift, then the activation (RELU: max(0, .), GELU: gelu(.)).
    Subtracting the mean first (instead of folding it into the shift) avoids cancellation
    when |mean| >> std."""
    cdef Py_ssize_t i
    cdef real zero = 0, y
    if activation == RELU:
        for i in range(length):
            y = (x[i] - centre) * scale + shift
            out[i] = y if y > zero else zero
    elif activation == GELU:
        for i in range(length):
            out[i] = gelu((x[i] - centre) * scale + shift)
    else:
        for i in range(length):
            out[i] = (x[i] - centre) * scale + shift


cdef inline void activation_gate(const real* dy, const real* x, real* g, Py_ssize_t length, real centre,
                                 real scale, real shift, int activation) noexcept nogil:
    """g = dy * activation'(y), the gradient at the normalised output y: for RELU dy where y > 0,
    else 0 (a select, not a branch: the mask is random); for GELU dy * gelu'(y).

    y is recomputed from x exactly as normalize_block computed it, so the mask (or slope)
    is the forward pass's own."""
    cdef Py_ssize_t i
    cdef real zero = 0, gradient, y
    if activation == GELU:
        for i in range(length):
            g[i] = dy[i] * gelu_slope((x[i] - centre) * scale + shift)
        return
    for i in range(length):
        # Both values are loaded before choosing, so the compiler can vectorise the choice.
        gradient = dy[i]
        y = (x[i] - centre) * scale + shift
        g[i] = gradient if y > zero else zero


def batchnorm_train_forward(
    const real[:, :, :, ::1] x,
    const double[::1] gamma,
    const double[::1] beta,
    double eps,
    int activation,
    real[:, :, :, ::1] out,
    double[::1] mean,
    double[::1] var,
    double[::1] inv_std,
    int num_threads,
):
    """out = gamma * (x - mean) / sqrt(var + eps) + beta with per-channel batch statistics,
    followed by the activation (0: none, 1: ReLU, 2: GELU).

    x, out: (N, C, H, W); gamma, beta: (C,). mean, var (biased) and inv_std (C,) are written.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n
    cdef double count = <double>(N * plane), total, m
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
            # The channel was just read twice and is still in cache for this third pass.
            for n in range(N):
                normalize_block(&x[n, c, 0, 0], &out[n, c, 0, 0], plane, <real>m,
                                <real>(gamma[c] * inv_std[c]), <real>beta[c], activation)


def normalize_with(
    const real[:, :, :, ::1] x,
    const double[::1] gamma,
    const double[::1] beta,
    const double[::1] mean,
    const double[::1] inv_std,
    int activation,
    real[:, :, :, ::1] out,
    int num_threads,
):
    """out = gamma * (x - mean) * inv_std + beta (then the activation) with given statistics (test mode),
    one pass."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n
    with nogil:
        for c in prange(C, num_threads=num_threads, schedule="static"):
            for n in range(N):
                normalize_block(&x[n, c, 0, 0], &out[n, c, 0, 0], plane, <real>mean[c],
                                <real>(gamma[c] * inv_std[c]), <real>beta[c], activation)


def batchnorm_backward(
    const real[:, :, :, ::1] dout,
    const real[:, :, :, ::1] x,
    const double[::1] gamma,
    const double[::1] beta,
    const double[::1] mean,
    const double[::1] inv_std,
    bint batch_statistics,
    int activation,
    real[:, :, :, ::1] dx,
    double[::1] dgamma,
    double[::1] dbeta,
    int num_threads,
):
    """Fused per-channel backward pass; dx (N, C, H, W), dgamma and dbeta (C,) are written.

    g is the gradient at the normalised output: dout, or with an activation dout times its
    slope there (ReLU: dout where the forward output was positive, 0 elsewhere). With xhat = (x - mean) * inv_std and M values
    per channel:
      dbeta = sum(g), dgamma = sum(g * xhat),
      dx = gamma * inv_std * (g - dbeta / M - xhat * dgamma / M)   (batch statistics),
      dx = gamma * inv_std * g                                     (running statistics).
    Both are computed as dx = a * g + b * (x - mean) + d in one fused pass.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t c, n, i
    cdef double count = <double>(N * plane), sum_g, sum_g_dev, g_istd
    cdef const real* g_block
    cdef const real* x_block
    cdef real* dx_block
    cdef real a, b, d, centre
    with nogil:
        for c in prange(C, num_threads=num_threads, schedule="static"):
            centre = <real>mean[c]
            sum_g = 0
            sum_g_dev = 0
            for n in range(N):
                # With an activation, g is first written into dx (the channel stays in cache),
                # so that the sums and the final pass below are the same as without it.
                if activation != NO_ACTIVATION:
                    activation_gate(&dout[n, c, 0, 0], &x[n, c, 0, 0], &dx[n, c, 0, 0], plane, centre,
                                    <real>(gamma[c] * inv_std[c]), <real>beta[c], activation)
                    g_block = &dx[n, c, 0, 0]
                else:
                    g_block = &dout[n, c, 0, 0]
                sum_g = sum_g + block_sum(g_block, plane)
                sum_g_dev = sum_g_dev + block_dot_deviation(g_block, &x[n, c, 0, 0], plane, mean[c])
            dbeta[c] = sum_g
            dgamma[c] = sum_g_dev * inv_std[c]
            g_istd = gamma[c] * inv_std[c]
            a = <real>g_istd
            if batch_statistics:
                # dx = g_istd * (g - sum_g/M - (x - mean) * inv_std^2 * sum_g_dev / M)
                b = <real>(-g_istd * inv_std[c] * inv_std[c] * sum_g_dev / count)
                d = <real>(-g_istd * sum_g / count)
            else:
                b = 0
                d = 0
            for n in range(N):
                g_block = &dx[n, c, 0, 0] if activation != NO_ACTIVATION else &dout[n, c, 0, 0]
                x_block = &x[n, c, 0, 0]
                dx_block = &dx[n, c, 0, 0]
                for i in range(plane):
                    dx_block[i] = a * g_block[i] + b * (x_block[i] - centre) + d


def groupnorm_forward(
    const real[:, :, :, ::1] x,
    const double[::1] gamma,
    const double[::1] beta,
    int G,
    double eps,
    real[:, :, :, ::1] out,
    double[:, ::1] mean,
    double[:, ::1] inv_std,
    int num_threads,
):
    """out = gamma * (x - mean) * inv_std + beta with statistics per (image, group).

    x, out: (N, C, H, W); gamma, beta: (C,); G divides C. mean and inv_std (N, G) are written.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t per_group = C // G, length = per_group * plane
    cdef Py_ssize_t task, n, g, c
    cdef double m, istd
    with nogil:
        for task in prange(N * G, num_threads=num_threads, schedule="static"):
            n = task // G
            g = task % G
            m = block_sum(&x[n, g * per_group, 0, 0], length) / length
            istd = 1.0 / sqrt(block_squared_deviation(&x[n, g * per_group, 0, 0], length, m) / length + eps)
            mean[n, g] = m
            inv_std[n, g] = istd
            for c in range(g * per_group, (g + 1) * per_group):
                normalize_block(&x[n, c, 0, 0], &out[n, c, 0, 0], plane, <real>m, <real>(gamma[c] * istd),
                                <real>beta[c], NO_ACTIVATION)


def groupnorm_backward(
    const real[:, :, :, ::1] dout,
    const real[:, :, :, ::1] x,
    const double[::1] gamma,
    const double[:, ::1] mean,
    const double[:, ::1] inv_std,
    int G,
    real[:, :, :, ::1] dx,
    double[:, ::1] dgamma_parts,
    double[:, ::1] dbeta_parts,
    int num_threads,
):
    """Fused backward pass per (image, group); dx (N, C, H, W) is written, and the per-image
    parts of the parameter gradients: dgamma_parts[n, c] = sum(dout * xhat), dbeta_parts[n, c]
    = sum(dout) over H, W (the caller sums them over n).

    With dxhat = gamma * dout and L values per group:
      dx = inv_std * (dxhat - sum(dxhat) / L - xhat * sum(dxhat * xhat) / L),
    computed per channel as dx = a_c * dout + b * (x - mean) + d in one pass.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t per_group = C // G
    cdef double length = <double>(per_group * plane)
    cdef Py_ssize_t task, n, g, c, i
    cdef double m, istd, sum_dxhat, sum_dxhat_dev, part_g, part_g_dev
    cdef const real* dy_block
    cdef const real* x_block
    cdef real* dx_block
    cdef real a, b, d, centre
    with nogil:
        for task in prange(N * G, num_threads=num_threads, schedule="static"):
            n = task // G
            g = task % G
            m = mean[n, g]
            istd = inv_std[n, g]
            sum_dxhat = 0
            sum_dxhat_dev = 0
            for c in range(g * per_group, (g + 1) * per_group):
                part_g = block_sum(&dout[n, c, 0, 0], plane)
                part_g_dev = block_dot_deviation(&dout[n, c, 0, 0], &x[n, c, 0, 0], plane, m)
                dbeta_parts[n, c] = part_g
                dgamma_parts[n, c] = part_g_dev * istd
                sum_dxhat = sum_dxhat + gamma[c] * part_g
                sum_dxhat_dev = sum_dxhat_dev + gamma[c] * part_g_dev
            centre = <real>m
            b = <real>(-istd * istd * istd * sum_dxhat_dev / length)
            d = <real>(-istd * sum_dxhat / length)
            for c in range(g * per_group, (g + 1) * per_group):
                a = <real>(gamma[c] * istd)
                dy_block = &dout[n, c, 0, 0]
                x_block = &x[n, c, 0, 0]
                dx_block = &dx[n, c, 0, 0]
                for i in range(plane):
                    dx_block[i] = a * dy_block[i] + b * (x_block[i] - centre) + d
