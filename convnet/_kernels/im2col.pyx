"""im2col / col2im: unfold convolution windows into GEMM columns and fold them back.

Column layout (shared by both functions): for a batch chunk of Nc images,
``cols`` has shape (C * HH * WW, Nc * OH * OW) with

    row    k = (c * HH + i) * WW + j          (channel, filter row, filter column)
    column q = n * (OH * OW) + oh * OW + ow    (image, output row, output column)
    cols[k, q] = x_padded[n, c, oh * stride + i, ow * stride + j]

so that conv output = w.reshape(F, -1) @ cols. The GEMM's (F, Nc * OH * OW) result
and the (Nc, F, OH, OW) images hold the same values in two orders; rows_to_images and
images_to_rows move between them in parallel. The callers (convnet.conv_layers)
validate every shape before calling; these functions trust their arguments.
"""

from cython.parallel cimport prange
from libc.string cimport memcpy

from convnet._kernels.floats cimport real


# Output positions o whose input index o * stride + offset lies inside [0, size)
# form the range [first_inside, end_inside). Returned by value, not through
# pointers: Cython makes a prange variable thread-private only when the loop
# body assigns it.
cdef inline Py_ssize_t first_inside(Py_ssize_t out_size, Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    cdef Py_ssize_t first
    if offset >= 0:
        return 0
    first = (-offset + stride - 1) // stride
    return first if first < out_size else out_size


cdef inline Py_ssize_t end_inside(Py_ssize_t size, Py_ssize_t out_size, Py_ssize_t offset,
                                  Py_ssize_t stride) noexcept nogil:
    """Never below first_inside(...), so [first, end) is always a valid (maybe empty) range."""
    cdef Py_ssize_t first = first_inside(out_size, offset, stride), end
    if size - 1 - offset < 0:
        return first
    end = (size - 1 - offset) // stride + 1
    if end > out_size:
        end = out_size
    return end if end > first else first


def im2col(
    const real[:, :, :, ::1] x,
    int field_h,
    int field_w,
    int pad,
    int stride,
    int out_h,
    int out_w,
    real[:, ::1] cols,
    int num_threads,
):
    """Fill cols (C*HH*WW, N*OH*OW) from x (N, C, H, W); zero padding is implicit."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t rows = C * field_h * field_w
    cdef Py_ssize_t plane = out_h * out_w
    cdef Py_ssize_t k, c, i, j, n, oh, ow, ih, ow_lo, ow_hi, offset
    cdef const real* src
    cdef real* dst
    with nogil:
        # Each row k is written by one thread: contiguous writes, no sharing.
        for k in prange(rows, num_threads=num_threads, schedule="static"):
            c = k // (field_h * field_w)
            i = (k // field_w) % field_h
            j = k % field_w
            offset = j - pad  # input column = ow * stride + offset
            # Columns ow outside [ow_lo, ow_hi) read the zero padding.
            ow_lo = first_inside(out_w, offset, stride)
            ow_hi = end_inside(W, out_w, offset, stride)
            for n in range(N):
                for oh in range(out_h):
                    dst = &cols[k, n * plane + oh * out_w]
                    ih = oh * stride - pad + i
                    if ih < 0 or ih >= H:
                        for ow in range(out_w):
                            dst[ow] = 0
                        continue
                    src = &x[n, c, ih, 0]
                    for ow in range(ow_lo):
                        dst[ow] = 0
                    if stride == 1:  # the common case: one contiguous run
                        memcpy(dst + ow_lo, src + ow_lo + offset, (ow_hi - ow_lo) * sizeof(real))
                    else:
                        for ow in range(ow_lo, ow_hi):
                            dst[ow] = src[ow * stride + offset]
                    for ow in range(ow_hi, out_w):
                        dst[ow] = 0


def col2im(
    const real[:, ::1] cols,
    int field_h,
    int field_w,
    int pad,
    int stride,
    int out_h,
    int out_w,
    real[:, :, :, ::1] dx,
    int num_threads,
):
    """Accumulate cols (C*HH*WW, N*OH*OW) back into dx (N, C, H, W), which is overwritten.

    Entries that fell in the zero padding are dropped. Overlapping windows add up,
    which is exactly the gradient of im2col.
    """
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], H = dx.shape[2], W = dx.shape[3]
    cdef Py_ssize_t plane = out_h * out_w
    cdef Py_ssize_t nc, n, c, i, j, k, oh, ow, ih, ow_lo, ow_hi, offset, p
    cdef const real* src
    cdef real* dst
    with nogil:
        # One (image, channel) plane per task: every write to dx[n, c] comes from this task.
        # Tasks run channel-major, so a thread walks along the rows of its channels in
        # order of n (streaming reads) rather than hopping between rows for every image.
        for nc in prange(N * C, num_threads=num_threads, schedule="static"):
            c = nc // N
            n = nc % N
            dst = &dx[n, c, 0, 0]
            for p in range(H * W):
                dst[p] = 0
            for i in range(field_h):
                for j in range(field_w):
                    k = (c * field_h + i) * field_w + j
                    offset = j - pad
                    ow_lo = first_inside(out_w, offset, stride)
                    ow_hi = end_inside(W, out_w, offset, stride)
                    for oh in range(out_h):
                        ih = oh * stride - pad + i
                        if ih < 0 or ih >= H:
                            continue
                        src = &cols[k, n * plane + oh * out_w]
                        dst = &dx[n, c, ih, 0]
                        if stride == 1:
                            for ow in range(ow_lo, ow_hi):
                                dst[ow + offset] += src[ow]
                        else:
                            for ow in range(ow_lo, ow_hi):
                                dst[ow * stride + offset] += src[ow]


def rows_to_images(
    const real[:, ::1] product,
    const real[::1] bias,
    real[:, :, ::1] out,
    int num_threads,
):
    """out[n, f, p] = product[f, n * P + p] + bias[f]; product (F, N*P), out (N, F, P)."""
    cdef Py_ssize_t N = out.shape[0], F = out.shape[1], P = out.shape[2]
    cdef Py_ssize_t nf, n, f, p
    cdef real b
    cdef const real* src
    cdef real* dst
    with nogil:
        for nf in prange(N * F, num_threads=num_threads, schedule="static"):
            n = nf // F
            f = nf % F
            b = bias[f]
            src = &product[f, n * P]
            dst = &out[n, f, 0]
            for p in range(P):
                dst[p] = src[p] + b


def images_to_rows(
    const real[:, :, ::1] images,
    real[:, ::1] rows,
    int num_threads,
):
    """rows[f, n * P + p] = images[n, f, p]; images (N, F, P), rows (F, N*P)."""
    cdef Py_ssize_t N = images.shape[0], F = images.shape[1], P = images.shape[2]
    cdef Py_ssize_t nf, n, f
    with nogil:
        for nf in prange(N * F, num_threads=num_threads, schedule="static"):
            n = nf // F
            f = nf % F
            memcpy(&rows[f, n * P], &images[n, f, 0], P * sizeof(real))
