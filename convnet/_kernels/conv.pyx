"""Convolution as im2col + GEMM, tiled so that the columns stay in a core's cache.

Each thread takes whole images (so no two threads ever write the same dx[n]); an image
is cut into tiles of ``tile_rows`` output rows, and for each tile the thread unfolds
the windows into its own slice of ``workspace`` and runs one single-threaded GEMM on
it. A tile's columns (C*HH*WW, tile_rows*OW) are small enough to stay in the core's L2
cache between the unfold and the product, so they never travel to main memory, and the
two cores never wait on each other inside a call.

Layouts (C order): x (N, C, H, W); w_rows (F, K) with K = C*HH*WW and row
k = (c*HH + i)*WW + j; out and dout (N, F, OH, OW). A tile's columns are
cols[k, r*OW + ow] = x_padded[n, c, (oh0 + r)*stride + i, ow*stride + j].

The GEMMs are BLAS's, through convnet/_kernels/blas.pxd (which says how its Fortran
order maps to these C-ordered arrays).
The callers (convnet.conv_layers) validate every shape first; nothing here checks.
"""

from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset
from convnet._kernels.blas cimport gemm
from convnet._kernels.floats cimport real


cdef inline Py_ssize_t first_inside(Py_ssize_t out_size, Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    """The first output position o with o * stride + offset >= 0 (at most out_size)."""
    cdef Py_ssize_t first
    if offset >= 0:
        return 0
    first = (-offset + stride - 1) // stride
    return first if first < out_size else out_size


cdef inline Py_ssize_t end_inside(Py_ssize_t size, Py_ssize_t out_size, Py_ssize_t offset,
                                  Py_ssize_t stride) noexcept nogil:
    """One past the last output position o with o * stride + offset < size; never below first_inside."""
    cdef Py_ssize_t first = first_inside(out_size, offset, stride), end
    if size - 1 - offset < 0:
        return first
    end = (size - 1 - offset) // stride + 1
    if end > out_size:
        end = out_size
    return end if end > first else first


cdef void unfold_tile(const real* image, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int field_h, int field_w,
                      int pad, int stride, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t out_w, Py_ssize_t ld,
                      real* cols) noexcept nogil:
    """cols[k, :(oh1 - oh0)*OW] (rows ld apart) <- the windows of output rows [oh0, oh1) of one image (C, H, W)."""
    cdef Py_ssize_t c, i, j, oh, ow, ih, ow_lo, ow_hi, offset
    cdef const real* src
    cdef real* dst
    cdef real* row = cols
    for c in range(C):
        for i in range(field_h):
            for j in range(field_w):
                offset = j - pad  # input column = ow * stride + offset
                ow_lo = first_inside(out_w, offset, stride)
                ow_hi = end_inside(W, out_w, offset, stride)
                dst = row
                for oh in range(oh0, oh1):
                    ih = oh * stride - pad + i
                    if ih < 0 or ih >= H:
                        memset(dst, 0, out_w * sizeof(real))
                    else:
                        src = image + (c * H + ih) * W
                        for ow in range(ow_lo):
                            dst[ow] = 0
                        if stride == 1:  # the common case: one contiguous run
                            memcpy(dst + ow_lo, src + ow_lo + offset, (ow_hi - ow_lo) * sizeof(real))
                        else:
                            for ow in range(ow_lo, ow_hi):
                                dst[ow] = src[ow * stride + offset]
                        for ow in range(ow_hi, out_w):
                            dst[ow] = 0
                    dst += out_w
                row += ld


cdef void fold_tile(const real* cols, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int field_h, int field_w,
                    int pad, int stride, Py_ssize_t oh0, Py_ssize_t oh1, Py_ssize_t out_w, Py_ssize_t ld,
                    real* image) noexcept nogil:
    """image (C, H, W) += the columns of output rows [oh0, oh1) folded back (the adjoint of unfold_tile)."""
    cdef Py_ssize_t c, i, j, oh, ow, ih, ow_lo, ow_hi, offset
    cdef const real* src
    cdef const real* row = cols
    cdef real* dst
    for c in range(C):
        for i in range(field_h):
            for j in range(field_w):
                offset = j - pad
                ow_lo = first_inside(out_w, offset, stride)
                ow_hi = end_inside(W, out_w, offset, stride)
                src = row
                for oh in range(oh0, oh1):
                    ih = oh * stride - pad + i
                    if ih >= 0 and ih < H:
                        dst = image + (c * H + ih) * W
                        if stride == 1:
                            for ow in range(ow_lo, ow_hi):
                                dst[ow + offset] += src[ow]
                        else:
                            for ow in range(ow_lo, ow_hi):
                                dst[ow * stride + offset] += src[ow]
                    src += out_w
                row += ld


def conv_forward_tiled(
    const real[:, :, :, ::1] x,
    const real[:, ::1] w_rows,
    const real[::1] bias,
    int field_h,
    int field_w,
    int pad,
    int stride,
    int tile_rows,
    int tile_images,
    real[:, ::1] workspace,
    real[:, ::1] products,
    real[:, :, :, ::1] out,
    int num_threads,
):
    """out (N, F, OH, OW) = conv(x, w) + bias, tile by tile.

    A tile is tile_rows output rows of one image (tile_images 1) or, for small images,
    tile_images whole images (tile_rows OH) side by side. workspace (num_threads,
    K * width) holds each thread's columns and products (num_threads, F * width) its
    GEMM result for a tile of several images, width = tile_images * tile_rows * OW.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = w_rows.shape[0], K = w_rows.shape[1]
    cdef Py_ssize_t out_h = out.shape[2], out_w = out.shape[3]
    cdef int plane = out_h * out_w
    cdef Py_ssize_t task, n0, n1, i, tile, oh0, oh1, f, p, part
    cdef int width
    cdef real* cols
    cdef real* product
    cdef real* dst
    cdef const real* src
    cdef real b
    with nogil, parallel(num_threads=num_threads):
        cols = &workspace[threadid(), 0]
        product = &products[threadid(), 0]
        for task in prange((N + tile_images - 1) // tile_images, schedule="dynamic"):
            n0 = task * tile_images
            n1 = n0 + tile_images if n0 + tile_images < N else N
            for tile in range((out_h + tile_rows - 1) // tile_rows):
                oh0 = tile * tile_rows
                oh1 = oh0 + tile_rows if oh0 + tile_rows < out_h else out_h
                part = (oh1 - oh0) * out_w  # one image's share of the tile's columns
                width = (n1 - n0) * part
                for i in range(n1 - n0):
                    unfold_tile(&x[n0 + i, 0, 0, 0], C, H, W, field_h, field_w, pad, stride, oh0, oh1, out_w,
                                width, cols + i * part)
                if n1 - n0 == 1:
                    # out[n, :, tile] (F, width; row stride OH*OW) = w_rows (F, K) @ cols (K, width)
                    dst = &out[n0, 0, oh0, 0]
                    gemm("N", "N", width, F, K, cols, width, &w_rows[0, 0], K, 0, dst, plane)
                    for f in range(F):  # the bias, while the tile is still in cache
                        b = bias[f]
                        for p in range(width):
                            dst[f * plane + p] += b
                else:
                    # product (F, width) = w_rows @ cols, then each image's (F, OH*OW) share to out, plus the bias
                    gemm("N", "N", width, F, K, cols, width, &w_rows[0, 0], K, 0, product, width)
                    for i in range(n1 - n0):
                        for f in range(F):
                            b = bias[f]
                            src = product + f * width + i * part
                            dst = &out[n0 + i, f, 0, 0]
                            for p in range(part):
                                dst[p] = src[p] + b


def conv_backward_tiled(
    const real[:, :, :, ::1] x,
    const real[:, ::1] w_rows,
    const real[:, :, :, ::1] dout,
    int field_h,
    int field_w,
    int pad,
    int stride,
    int tile_rows,
    int tile_images,
    bint compute_dx,
    bint compute_dw,
    real[:, ::1] workspace,
    real[:, ::1] products,
    real[:, :, ::1] dw_parts,
    real[:, ::1] db_parts,
    real[:, :, :, ::1] dx,
    int num_threads,
):
    """Gradients of conv_forward_tiled, over the same tiles.

    The images are cut into P = dw_parts.shape[0] consecutive groups; group g sums its
    share of the weight and bias gradients into dw_parts[g] (K, F) (dw transposed) and
    db_parts[g] (F,) (overwritten; the caller adds them up in order). Threads take groups
    as they become free, so a thread slowed by another process gets fewer of them, and
    the sums do not depend on which thread took which group: results are reproducible
    bit for bit. dx (N, C, H, W) is overwritten when compute_dx (otherwise it may be any
    array and is left alone); the weight gradient is skipped unless compute_dw (then
    dw_parts may be any (P, ...) array). workspace, products: as in conv_forward_tiled
    (products receives a tile's dout, gathered, when the tile has several images).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef int F = w_rows.shape[0], K = w_rows.shape[1]
    cdef Py_ssize_t out_h = dout.shape[2], out_w = dout.shape[3]
    cdef int plane = out_h * out_w
    cdef Py_ssize_t groups = dw_parts.shape[0]
    cdef Py_ssize_t g, n, n0, n1, group_end, i, tile, oh0, oh1, f, p, part
    cdef int width, ld
    cdef real* cols
    cdef real* gathered
    cdef real* dw
    cdef real* db
    cdef const real* src
    cdef real total
    with nogil, parallel(num_threads=num_threads):
        cols = &workspace[threadid(), 0]
        gathered = &products[threadid(), 0]
        for g in prange(groups, schedule="dynamic"):
            dw = &dw_parts[g, 0, 0]
            db = &db_parts[g, 0]
            if compute_dw:
                memset(dw, 0, K * F * sizeof(real))
            memset(db, 0, F * sizeof(real))
            group_end = (g + 1) * N // groups
            for n in range(g * N // groups, group_end):
                for f in range(F):
                    src = &dout[n, f, 0, 0]
                    total = 0
                    for p in range(plane):
                        total = total + src[p]
                    db[f] = db[f] + total
                if compute_dx:
                    memset(&dx[n, 0, 0, 0], 0, C * H * W * sizeof(real))
            n0 = g * N // groups
            while n0 < group_end and (compute_dw or compute_dx):
                n1 = n0 + tile_images if n0 + tile_images < group_end else group_end
                for tile in range((out_h + tile_rows - 1) // tile_rows):
                    oh0 = tile * tile_rows
                    oh1 = oh0 + tile_rows if oh0 + tile_rows < out_h else out_h
                    part = (oh1 - oh0) * out_w
                    width = (n1 - n0) * part
                    if n1 - n0 == 1:
                        src = &dout[n0, 0, oh0, 0]  # dout[n, :, tile]: (F, width), row stride OH*OW
                        ld = plane
                    else:  # the tile's dout side by side, as the columns: (F, width)
                        for i in range(n1 - n0):
                            for f in range(F):
                                memcpy(gathered + f * width + i * part, &dout[n0 + i, f, 0, 0], part * sizeof(real))
                        src = gathered
                        ld = width
                    if compute_dw:
                        for i in range(n1 - n0):
                            unfold_tile(&x[n0 + i, 0, 0, 0], C, H, W, field_h, field_w, pad, stride, oh0, oh1,
                                        out_w, width, cols + i * part)
                        # dw.T (K, F) += cols (K, width) @ dout tile.T (width, F): in this orientation
                        # BLAS ran the thin products of few-filter layers up to 1.9x faster
                        gemm("T", "N", F, K, width, src, ld, cols, width, 1, dw, F)
                    if compute_dx:
                        # d(columns) (K, width) = w_rows.T (K, F) @ dout tile (F, width), into the columns' buffer
                        gemm("N", "T", width, K, F, src, ld, &w_rows[0, 0], K, 0, cols, width)
                        for i in range(n1 - n0):
                            fold_tile(cols + i * part, C, H, W, field_h, field_w, pad, stride, oh0, oh1, out_w,
                                      width, &dx[n0 + i, 0, 0, 0])
                n0 = n1
