"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 16 multiplications per 2x2 output
tile and input channel instead of 36.

For a 4x4 input tile d and a 3x3 filter g, the 2x2 output tile is A^T [(G g G^T) * (B^T d B)] A
(an elementwise product between 4x4 matrices). Summed over the input channels, the 16
elementwise products become 16 independent GEMMs, one per element e = 4*i + j of the 4x4
matrices: M[e] (F, T) = U[e] (F, C) @ V[e] (C, T) over T tiles at a time.

B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] (applied by the caller: U = G g G^T)

Layouts (C order): x (N, C, H, W); filters U (16, F, C); out (N, F, OH, OW) with
OH = H + 2*pad - 2. Output tile (ty, tx) covers out[:, :, 2ty:2ty+2, 2tx:2tx+2] and reads
the input rows and columns from 2ty - pad and 2tx - pad on (zeros outside the image; the
tiles of an odd-sized output hang over its edge and their extra row or column is dropped).
The tile rows of all images are numbered together, r = n * tiles_h + ty; a task is a run of
consecutive tile rows (perhaps of several images). The threads take tasks as they become
free; each transforms the task's input tiles into its share of `inputs` (16, C, T), runs the
16 single-threaded GEMMs (convnet/_kernels/blas.pxd) into `products` (16, F, T) and
transforms those into out, plus the bias. No two tasks write the same output, so the result
does not depend on the threads. The callers (convnet.conv_layers) validate every shape.
"""

from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from convnet._kernels.blas cimport gemm
from convnet._kernels.floats cimport real


cdef void transform_inputs(const real* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int pad,
                           Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                           real* rows, real* v) noexcept nogil:
    """v (16, C, T) <- B^T d B of every input tile d of tile rows [r0, r1), T = (r1 - r0) * tiles_w.

    rows (4, 2 * tiles_w + 2) receives the four input rows a tile row reads, zero-padded, so
    that the transform itself has no edge cases.
    """
    cdef Py_ssize_t T = (r1 - r0) * tiles_w, plane = C * T, width = 2 * tiles_w + 2
    cdef Py_ssize_t r, n, c, tx, i, k, y0, yy
    cdef const real* image
    cdef real* row
    cdef real* dst
    cdef real* p0 = rows
    cdef real* p1 = rows + width
    cdef real* p2 = rows + 2 * width
    cdef real* p3 = rows + 3 * width
    cdef real h00, h01, h02, h03, h10, h11, h12, h13, h20, h21, h22, h23, h30, h31, h32, h33
    for r in range(r0, r1):
        n = r // tiles_h
        y0 = 2 * (r % tiles_h) - pad
        for c in range(C):
            image = x + (n * C + c) * H * W
            for i in range(4):  # the image's columns land at [pad, pad + W) of a padded row
                row = rows + i * width
                yy = y0 + i
                memset(row, 0, width * sizeof(real))
                if 0 <= yy < H:
                    memcpy(row + pad, image + yy * W, W * sizeof(real))
            dst = v + c * T + (r - r0) * tiles_w
            for tx in range(tiles_w):
                k = 2 * tx
                # h = d B, row by row of the tile
                h00 = p0[k] - p0[k + 2]
                h01 = p0[k + 1] + p0[k + 2]
                h02 = p0[k + 2] - p0[k + 1]
                h03 = p0[k + 1] - p0[k + 3]
                h10 = p1[k] - p1[k + 2]
                h11 = p1[k + 1] + p1[k + 2]
                h12 = p1[k + 2] - p1[k + 1]
                h13 = p1[k + 1] - p1[k + 3]
                h20 = p2[k] - p2[k + 2]
                h21 = p2[k + 1] + p2[k + 2]
                h22 = p2[k + 2] - p2[k + 1]
                h23 = p2[k + 1] - p2[k + 3]
                h30 = p3[k] - p3[k + 2]
                h31 = p3[k + 1] + p3[k + 2]
                h32 = p3[k + 2] - p3[k + 1]
                h33 = p3[k + 1] - p3[k + 3]
                # V = B^T h; element 4*i + j goes to dst[(4*i + j) * plane + tx]
                dst[tx] = h00 - h20
                dst[plane + tx] = h01 - h21
                dst[2 * plane + tx] = h02 - h22
                dst[3 * plane + tx] = h03 - h23
                dst[4 * plane + tx] = h10 + h20
                dst[5 * plane + tx] = h11 + h21
                dst[6 * plane + tx] = h12 + h22
                dst[7 * plane + tx] = h13 + h23
                dst[8 * plane + tx] = h20 - h10
                dst[9 * plane + tx] = h21 - h11
                dst[10 * plane + tx] = h22 - h12
                dst[11 * plane + tx] = h23 - h13
                dst[12 * plane + tx] = h10 - h30
                dst[13 * plane + tx] = h11 - h31
                dst[14 * plane + tx] = h12 - h32
                dst[15 * plane + tx] = h13 - h33


cdef void transform_outputs(const real* m, const real* bias, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                            real* rows, real* out) noexcept nogil:
    """out tiles of tile rows [r0, r1) <- A^T M A + bias, from m (16, F, T).

    rows (at least 2, 2 * tiles_w) receives a tile row's two output rows whole; the OW
    columns that exist (and the rows that do) are then copied to out.
    """
    cdef Py_ssize_t T = (r1 - r0) * tiles_w, plane = F * T, width = 2 * tiles_w
    cdef Py_ssize_t r, n, f, tx, oy
    cdef const real* q
    cdef real* upper = rows
    cdef real* lower = rows + width
    cdef real* dst
    cdef real b, s0, s1, s2, s3, s4, s5, s6, s7
    for r in range(r0, r1):
        n = r // tiles_h
        oy = 2 * (r % tiles_h)
        for f in range(F):
            q = m + f * T + (r - r0) * tiles_w
            b = bias[f]
            for tx in range(tiles_w):
                # s = A^T M, then the two columns of s A
                s0 = q[tx] + q[4 * plane + tx] + q[8 * plane + tx]
                s1 = q[plane + tx] + q[5 * plane + tx] + q[9 * plane + tx]
                s2 = q[2 * plane + tx] + q[6 * plane + tx] + q[10 * plane + tx]
                s3 = q[3 * plane + tx] + q[7 * plane + tx] + q[11 * plane + tx]
                s4 = q[4 * plane + tx] - q[8 * plane + tx] - q[12 * plane + tx]
                s5 = q[5 * plane + tx] - q[9 * plane + tx] - q[13 * plane + tx]
                s6 = q[6 * plane + tx] - q[10 * plane + tx] - q[14 * plane + tx]
                s7 = q[7 * plane + tx] - q[11 * plane + tx] - q[15 * plane + tx]
                upper[2 * tx] = s0 + s1 + s2 + b
                upper[2 * tx + 1] = s1 - s2 - s3 + b
                lower[2 * tx] = s4 + s5 + s6 + b
                lower[2 * tx + 1] = s5 - s6 - s7 + b
            dst = out + ((n * F + f) * OH + oy) * OW
            memcpy(dst, upper, OW * sizeof(real))
            if oy + 1 < OH:
                memcpy(dst + OW, lower, OW * sizeof(real))


def winograd_forward(
    const real[:, :, :, ::1] x,
    const real[:, :, ::1] filters,
    const real[::1] bias,
    int pad,
    int rows_per_task,
    real[:, ::1] inputs,
    real[:, ::1] products,
    real[:, ::1] padded_rows,
    real[:, :, :, ::1] out,
    int num_threads,
):
    """out (N, F, OH, OW) = conv(x, g) + bias for the 3x3 filters g whose transforms are filters (16, F, C).

    A task is rows_per_task tile rows (the last one fewer); inputs (num_threads, 16*C*T) and
    products (num_threads, 16*F*T) hold each thread's transformed tiles, T = rows_per_task * tiles_w,
    and padded_rows (num_threads, 4 * (2*tiles_w + 2)) its copies of the input rows a tile row reads.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = filters.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t tiles_h = (OH + 1) // 2, tiles_w = (OW + 1) // 2
    cdef Py_ssize_t rows = N * tiles_h
    cdef Py_ssize_t task, r0, r1, e
    cdef int T
    cdef real* v
    cdef real* m
    cdef real* scratch
    with nogil, parallel(num_threads=num_threads):
        v = &inputs[threadid(), 0]
        m = &products[threadid(), 0]
        scratch = &padded_rows[threadid(), 0]
        for task in prange((rows + rows_per_task - 1) // rows_per_task, schedule="dynamic"):
            r0 = task * rows_per_task
            r1 = r0 + rows_per_task if r0 + rows_per_task < rows else rows
            T = (r1 - r0) * tiles_w
            transform_inputs(&x[0, 0, 0, 0], C, H, W, pad, tiles_h, tiles_w, r0, r1, scratch, v)
            for e in range(16):
                # M[e] (F, T) = U[e] (F, C) @ V[e] (C, T); to BLAS, (T, F) = (T, C) @ (C, F)
                gemm("N", "N", T, F, C, v + e * C * T, T, &filters[e, 0, 0], C, 0, m + e * F * T, T)
            transform_outputs(m, &bias[0], F, OH, OW, tiles_h, tiles_w, r0, r1, scratch, &out[0, 0, 0, 0])
