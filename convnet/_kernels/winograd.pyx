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


cdef inline Py_ssize_t task_end(Py_ssize_t task, Py_ssize_t rows_per_task, Py_ssize_t rows) noexcept nogil:
    """One past the last tile row of task number ``task`` (the last task may have fewer rows)."""
    cdef Py_ssize_t end = (task + 1) * rows_per_task
    return end if end < rows else rows


# Elementwise combinations of runs of n values: simple loops that the C compiler vectorises.
cdef inline void add2(const real* a, const real* b, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = a[t] + b[t]


cdef inline void sub2(const real* a, const real* b, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = a[t] - b[t]


cdef inline void add3(const real* a, const real* b, const real* c, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = a[t] + b[t] + c[t]


cdef inline void sub3(const real* a, const real* b, const real* c, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = a[t] - b[t] - c[t]


cdef void gather_tiles(const real* image, Py_ssize_t H, Py_ssize_t W, int pad, Py_ssize_t y0,
                       Py_ssize_t tiles_w, Py_ssize_t T, real* d) noexcept nogil:
    """d[4*i + j, tx] (rows T apart) <- image[y0 + i, 2*tx - pad + j] for one tile row, zero outside the image."""
    cdef Py_ssize_t i, j, tx, yy, lo, hi
    cdef const real* src
    cdef real* dst
    for i in range(4):
        yy = y0 + i
        for j in range(4):
            dst = d + (4 * i + j) * T
            if yy < 0 or yy >= H:
                memset(dst, 0, tiles_w * sizeof(real))
                continue
            src = image + yy * W - pad + j  # src[2 * tx] is column 2*tx - pad + j
            lo = (pad - j + 1) // 2 if pad > j else 0  # the first tile whose column is >= 0
            hi = (W + pad - j + 1) // 2  # one past the last tile whose column is < W
            if lo > tiles_w:
                lo = tiles_w
            if hi > tiles_w:
                hi = tiles_w
            if hi < lo:
                hi = lo
            for tx in range(lo):
                dst[tx] = 0
            for tx in range(lo, hi):
                dst[tx] = src[2 * tx]
            for tx in range(hi, tiles_w):
                dst[tx] = 0


cdef void transform_inputs(const real* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int pad,
                           Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                           real* scratch, real* v) noexcept nogil:
    """v (16, C, T) <- B^T d B of every input tile d of tile rows [r0, r1), T = (r1 - r0) * tiles_w.

    Channel by channel, the tiles' 16 values are gathered into scratch[:16*T] (d[k, t]), and
    h = d B (scratch[16*T:32*T]) and B^T h are formed over all T tiles at once.
    """
    cdef Py_ssize_t T = (r1 - r0) * tiles_w
    cdef Py_ssize_t r, n, c, i, j
    cdef real* d = scratch
    cdef real* h = scratch + 16 * T
    cdef real* out
    for c in range(C):
        for r in range(r0, r1):
            n = r // tiles_h
            gather_tiles(x + (n * C + c) * H * W, H, W, pad, 2 * (r % tiles_h) - pad, tiles_w, T,
                         d + (r - r0) * tiles_w)
        for i in range(4):  # h = d B, row i of every tile
            sub2(d + (4 * i) * T, d + (4 * i + 2) * T, h + (4 * i) * T, T)
            add2(d + (4 * i + 1) * T, d + (4 * i + 2) * T, h + (4 * i + 1) * T, T)
            sub2(d + (4 * i + 2) * T, d + (4 * i + 1) * T, h + (4 * i + 2) * T, T)
            sub2(d + (4 * i + 1) * T, d + (4 * i + 3) * T, h + (4 * i + 3) * T, T)
        out = v + c * T  # element e of channel c at out[e * C * T]
        for j in range(4):  # V = B^T h, column j of every tile
            sub2(h + j * T, h + (8 + j) * T, out + j * C * T, T)
            add2(h + (4 + j) * T, h + (8 + j) * T, out + (4 + j) * C * T, T)
            sub2(h + (8 + j) * T, h + (4 + j) * T, out + (8 + j) * C * T, T)
            sub2(h + (4 + j) * T, h + (12 + j) * T, out + (12 + j) * C * T, T)


cdef void transform_outputs(const real* m, const real* bias, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                            real* scratch, real* out) noexcept nogil:
    """out tiles of tile rows [r0, r1) <- A^T M A + bias, from m (16, F, T).

    Filter by filter, s = A^T M (scratch[:8*T]) and the four outputs of every tile
    (scratch[8*T:12*T], y[2*a + b] for out row 2*ty + a, column 2*tx + b) are formed over all T
    tiles at once, then scattered to out (the rows and columns beyond OH and OW dropped).
    """
    cdef Py_ssize_t T = (r1 - r0) * tiles_w, plane = F * T
    cdef Py_ssize_t r, n, f, tx, j, oy, a
    cdef const real* q
    cdef real* s = scratch
    cdef real* y = scratch + 8 * T
    cdef real* top
    cdef real* left
    cdef real* right
    cdef real b
    for f in range(F):
        q = m + f * T  # element e at q[e * plane]
        for j in range(4):  # s = A^T M
            add3(q + j * plane, q + (4 + j) * plane, q + (8 + j) * plane, s + j * T, T)
            sub3(q + (4 + j) * plane, q + (8 + j) * plane, q + (12 + j) * plane, s + (4 + j) * T, T)
        for a in range(2):  # y = s A
            add3(s + (4 * a) * T, s + (4 * a + 1) * T, s + (4 * a + 2) * T, y + (2 * a) * T, T)
            sub3(s + (4 * a + 1) * T, s + (4 * a + 2) * T, s + (4 * a + 3) * T, y + (2 * a + 1) * T, T)
        b = bias[f]
        for r in range(r0, r1):
            n = r // tiles_h
            oy = 2 * (r % tiles_h)
            for a in range(2):
                if oy + a >= OH:
                    break
                top = out + ((n * F + f) * OH + oy + a) * OW
                left = y + (2 * a) * T + (r - r0) * tiles_w
                right = y + (2 * a + 1) * T + (r - r0) * tiles_w
                for tx in range(OW // 2):
                    top[2 * tx] = left[tx] + b
                    top[2 * tx + 1] = right[tx] + b
                if OW % 2:
                    top[OW - 1] = left[OW // 2] + b


def winograd_forward(
    const real[:, :, :, ::1] x,
    const real[:, :, ::1] filters,
    const real[::1] bias,
    int pad,
    int rows_per_task,
    real[:, ::1] inputs,
    real[:, ::1] products,
    real[:, ::1] scratch,
    real[:, :, :, ::1] out,
    int num_threads,
):
    """out (N, F, OH, OW) = conv(x, g) + bias for the 3x3 filters g whose transforms are filters (16, F, C).

    A task is rows_per_task tile rows (the last one fewer); inputs (num_threads, 16*C*T) and
    products (num_threads, 16*F*T) hold each thread's transformed tiles, T = rows_per_task * tiles_w,
    and scratch (num_threads, 32 * T) its intermediate combinations.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = filters.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t tiles_h = (OH + 1) // 2, tiles_w = (OW + 1) // 2
    cdef Py_ssize_t rows = N * tiles_h
    cdef Py_ssize_t task, r0, r1, e
    cdef int T
    cdef real* v
    cdef real* m
    cdef real* own
    with nogil, parallel(num_threads=num_threads):
        v = &inputs[threadid(), 0]
        m = &products[threadid(), 0]
        own = &scratch[threadid(), 0]
        for task in prange((rows + rows_per_task - 1) // rows_per_task, schedule="dynamic"):
            r0 = task * rows_per_task
            r1 = task_end(task, rows_per_task, rows)
            T = (r1 - r0) * tiles_w
            transform_inputs(&x[0, 0, 0, 0], C, H, W, pad, tiles_h, tiles_w, r0, r1, own, v)
            for e in range(16):
                # M[e] (F, T) = U[e] (F, C) @ V[e] (C, T); to BLAS, (T, F) = (T, C) @ (C, F)
                gemm("N", "N", T, F, C, v + e * C * T, T, &filters[e, 0, 0], C, 0, m + e * F * T, T)
            transform_outputs(m, &bias[0], F, OH, OW, tiles_h, tiles_w, r0, r1, own, &out[0, 0, 0, 0])


cdef inline void half_add(const real* a, const real* b, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = (a[t] + b[t]) * 0.5


cdef inline void half_sub(const real* a, const real* b, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = (a[t] - b[t]) * 0.5


cdef void transform_gradients(const real* dout, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                              Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                              real* scratch, real* gh) noexcept nogil:
    """gh (16, F, T) <- G' g G'^T of every 2x2 output-gradient tile g of tile rows [r0, r1).

    G' = [[1, 0], [1/2, 1/2], [1/2, -1/2], [0, 1]]. Entries beyond OH and OW are zeros. Filter by
    filter, the tiles' four values go to scratch[:4*T] (g[2*u + v, t]) and G' g, row by row, to
    scratch[4*T:12*T] (k[4*u + j, t]).
    """
    cdef Py_ssize_t T = (r1 - r0) * tiles_w, plane = F * T
    cdef Py_ssize_t r, n, f, u, v, tx, oy, j, last
    cdef const real* src
    cdef real* g = scratch
    cdef real* k = scratch + 4 * T
    cdef real* dst
    cdef real* out
    for f in range(F):
        for r in range(r0, r1):
            n = r // tiles_h
            oy = 2 * (r % tiles_h)
            for u in range(2):
                for v in range(2):
                    dst = g + (2 * u + v) * T + (r - r0) * tiles_w
                    if oy + u >= OH:
                        memset(dst, 0, tiles_w * sizeof(real))
                        continue
                    src = dout + ((n * F + f) * OH + oy + u) * OW + v
                    last = (OW - v + 1) // 2  # the tiles whose column 2*tx + v is inside
                    for tx in range(last):
                        dst[tx] = src[2 * tx]
                    for tx in range(last, tiles_w):
                        dst[tx] = 0
        for u in range(2):  # k = G' g along each of the tile's two rows
            memcpy(k + (4 * u) * T, g + (2 * u) * T, T * sizeof(real))
            half_add(g + (2 * u) * T, g + (2 * u + 1) * T, k + (4 * u + 1) * T, T)
            half_sub(g + (2 * u) * T, g + (2 * u + 1) * T, k + (4 * u + 2) * T, T)
            memcpy(k + (4 * u + 3) * T, g + (2 * u + 1) * T, T * sizeof(real))
        out = gh + f * T  # element e at out[e * plane]
        for j in range(4):  # G' k down the columns
            memcpy(out + j * plane, k + j * T, T * sizeof(real))
            half_add(k + j * T, k + (4 + j) * T, out + (4 + j) * plane, T)
            half_sub(k + j * T, k + (4 + j) * T, out + (8 + j) * plane, T)
            memcpy(out + (12 + j) * plane, k + (4 + j) * T, T * sizeof(real))


def winograd_weight_gradient(
    const real[:, :, :, ::1] x,
    const real[:, :, :, ::1] dout,
    int pad,
    int rows_per_task,
    real[:, ::1] inputs,
    real[:, ::1] products,
    real[:, ::1] scratch,
    real[:, :, :, ::1] parts,
    int num_threads,
):
    """parts[g] (16, F, C) <- sum over group g's tiles of (G' g G'^T) * (B^T d B), for the weight gradient.

    The same tiles as winograd_forward: d the 4x4 input tile, g the 2x2 tile of dout (N, F, OH, OW)
    it produced. The tasks (rows_per_task tile rows each) are cut into P = parts.shape[0]
    consecutive groups; threads take groups as they become free, and each group's sum does not
    depend on which thread took it. The caller adds the parts up in order and applies
    A'^T (.) A' (A'^T = [[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, -1]]) to get dw (F, C, 3, 3).
    inputs, products, scratch: each thread's share, as in winograd_forward (products receives
    the transformed dout tiles).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = dout.shape[1], OH = dout.shape[2], OW = dout.shape[3]
    cdef Py_ssize_t tiles_h = (OH + 1) // 2, tiles_w = (OW + 1) // 2
    cdef Py_ssize_t rows = N * tiles_h
    cdef Py_ssize_t tasks = (rows + rows_per_task - 1) // rows_per_task
    cdef Py_ssize_t groups = parts.shape[0]
    cdef Py_ssize_t group, task, r0, r1, e
    cdef int T
    cdef real* v
    cdef real* gh
    cdef real* own
    cdef real* part
    with nogil, parallel(num_threads=num_threads):
        v = &inputs[threadid(), 0]
        gh = &products[threadid(), 0]
        own = &scratch[threadid(), 0]
        for group in prange(groups, schedule="dynamic"):
            part = &parts[group, 0, 0, 0]
            memset(part, 0, 16 * F * C * sizeof(real))
            for task in range(group * tasks // groups, (group + 1) * tasks // groups):
                r0 = task * rows_per_task
                r1 = task_end(task, rows_per_task, rows)
                T = (r1 - r0) * tiles_w
                transform_inputs(&x[0, 0, 0, 0], C, H, W, pad, tiles_h, tiles_w, r0, r1, own, v)
                transform_gradients(&dout[0, 0, 0, 0], F, OH, OW, tiles_h, tiles_w, r0, r1, own, gh)
                for e in range(16):
                    # part[e] (F, C) += gh[e] (F, T) @ v[e].T (T, C); to BLAS, (C, F) += (C, T) @ (T, F)
                    gemm("T", "N", C, F, T, v + e * C * T, T, gh + e * F * T, T, 1, part + e * F * C, C)
