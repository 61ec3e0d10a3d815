"""Max pooling over (N, C, H, W), one (image, channel) plane per parallel task.

Forward records, for every output, the flat index ih * W + iw of the winning
input inside its plane; backward sends each output gradient there.
Tie rule: the first maximum in row-major window order wins (strict ``>`` while
scanning rows top to bottom, left to right). A NaN wins over any number, and
the first NaN of a window is the one recorded, so NaNs propagate.
The kernels are driven by the output's shape: in floor mode (pool_param['floor'], chosen and
validated by the callers) out is smaller than a tiling would make it, the last rows and columns
of x that no window covers are never read, and backward leaves their dx at 0.
The callers (convnet.conv_layers) validate every shape before calling.
"""

from cython.parallel cimport prange

from convnet._kernels.floats cimport real


cdef inline bint beats(double v, double best) noexcept nogil:
    """True when v should replace best: larger, or the first NaN."""
    return v > best or (v != v and best == best)


def max_pool_forward(
    const real[:, :, :, ::1] x,
    int pool_h,
    int pool_w,
    int stride,
    real[:, :, :, ::1] out,
    int[:, :, :, ::1] argmax,
    int num_threads,
):
    """Any window and stride. out and argmax are (N, C, OH, OW) and are overwritten."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], W = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[2], out_w = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, i, j, ih, iw
    cdef double v
    with nogil:
        for nc in prange(N * C, num_threads=num_threads, schedule="static"):
            n = nc // C
            c = nc % C
            for oh in range(out_h):
                # Seed each window with its top-left value, then stream the input
                # rows of the window band so reads stay contiguous.
                for ow in range(out_w):
                    out[n, c, oh, ow] = x[n, c, oh * stride, ow * stride]
                    argmax[n, c, oh, ow] = <int>(oh * stride * W + ow * stride)
                for i in range(pool_h):
                    ih = oh * stride + i
                    for ow in range(out_w):
                        for j in range(pool_w):
                            iw = ow * stride + j
                            v = x[n, c, ih, iw]
                            if beats(v, out[n, c, oh, ow]):
                                out[n, c, oh, ow] = <real>v
                                argmax[n, c, oh, ow] = <int>(ih * W + iw)


def max_pool_forward_2x2(
    const real[:, :, :, ::1] x,
    real[:, :, :, ::1] out,
    int[:, :, :, ::1] argmax,
    int num_threads,
):
    """Fast path for the common 2x2 window with stride 2 (non-overlapping, fully tiled)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], W = x.shape[3]
    cdef Py_ssize_t out_h = out.shape[2], out_w = out.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, top, left
    cdef real best, v
    cdef int where
    with nogil:
        for nc in prange(N * C, num_threads=num_threads, schedule="static"):
            n = nc // C
            c = nc % C
            for oh in range(out_h):
                top = 2 * oh
                for ow in range(out_w):
                    left = 2 * ow
                    # Row-major order: (0,0), (0,1), (1,0), (1,1); strict > keeps the first maximum.
                    best = x[n, c, top, left]
                    where = <int>(top * W + left)
                    v = x[n, c, top, left + 1]
                    if beats(v, best):
                        best = v
                        where = <int>(top * W + left + 1)
                    v = x[n, c, top + 1, left]
                    if beats(v, best):
                        best = v
                        where = <int>((top + 1) * W + left)
                    v = x[n, c, top + 1, left + 1]
                    if beats(v, best):
                        best = v
                        where = <int>((top + 1) * W + left + 1)
                    out[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = where


def max_pool_backward(
    const real[:, :, :, ::1] dout,
    const int[:, :, :, ::1] argmax,
    real[:, :, :, ::1] dx,
    int num_threads,
):
    """dx (N, C, H, W) is overwritten: zeros, plus each dout added at its recorded argmax.

    Overlapping windows may pick the same input twice; their gradients add up.
    """
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t out_h = dout.shape[2], out_w = dout.shape[3]
    cdef Py_ssize_t nc, n, c, oh, ow, ih, iw, where
    with nogil:
        for nc in prange(N * C, num_threads=num_threads, schedule="static"):
            n = nc // C
            c = nc % C
            for ih in range(H):
                for iw in range(W):
                    dx[n, c, ih, iw] = 0
            for oh in range(out_h):
                for ow in range(out_w):
                    where = argmax[n, c, oh, ow]
                    dx[n, c, where // W, where % W] += dout[n, c, oh, ow]
