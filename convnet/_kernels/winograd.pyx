"""Winograd F(m x m, 3 x 3): a 3x3 stride-1 convolution with (m + 2)^2 multiplications per m x m output
tile and input channel instead of 9 m^2 (m = 2: 16 instead of 36; m = 4: 36 instead of 144).

For an a x a input tile d (a = m + 2) and a 3x3 filter g, the m x m output tile is
A^T [(G g G^T) * (B^T d B)] A (an elementwise product between a x a matrices). Summed over the
input channels, the a^2 elementwise products become a^2 independent GEMMs, one per element
e = a*i + j of the a x a matrices: M[e] (F, T) = U[e] (F, C) @ V[e] (C, T) over T tiles at a time.
m is 2 or 4; the tables B^T (a, a) and A^T (m, a) are written out below (input_rows,
output_rows, gradient_rows; convnet.conv_layers.WINOGRAD_TRANSFORMS holds them as arrays), and
the caller passes G (a, 3) to filter_transform (U = G g G^T) and to filter_gradient (its adjoint,
G^T S G). Each transform combines runs of T values, one run per tile element, one loop per output
run: loops the compiler vectorises.

Layouts (C order): x (N, C, H, W); filters U (a^2, F, C); out (N, F, OH, OW) with
OH = H + 2*pad - 2. Output tile (ty, tx) covers out[:, :, m*ty : m*ty + m, m*tx : m*tx + m] and reads
the input rows and columns from m*ty - pad and m*tx - pad on (zeros outside the image; the
tiles of an output whose size m does not divide hang over its edge, and what they compute
there is dropped). The tile rows of all images are numbered together, r = n * tiles_h + ty; a
task is a run of consecutive tile rows (perhaps of several images). The threads take tasks as
they become free; each transforms the task's input tiles into its share of `inputs`
(a^2, C, T), runs the a^2 single-threaded GEMMs (convnet/_kernels/blas.pxd) into `products`
(a^2, F, T) and transforms those into out, plus the bias. No two tasks write the same output, so
the result does not depend on the threads. The callers (convnet.conv_layers) validate every shape.
"""

from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset

from convnet._kernels.blas cimport gemm
from convnet._kernels.floats cimport real


cdef inline Py_ssize_t task_end(Py_ssize_t task, Py_ssize_t rows_per_task, Py_ssize_t rows) noexcept nogil:
    """One past the last tile row of task number ``task`` (the last task may have fewer rows)."""
    cdef Py_ssize_t end = (task + 1) * rows_per_task
    return end if end < rows else rows


# Linear combinations of runs of n values, out[t] = c0 * a[t] + c1 * b[t] + ...: one output per
# loop, so that the compiler's checks that out overlaps no input stay few and the loop vectorises.
cdef inline void lin1(real c0, const real* a, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = c0 * a[t]


cdef inline void lin2(real c0, const real* a, real c1, const real* b, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = c0 * a[t] + c1 * b[t]


cdef inline void lin3(real c0, const real* a, real c1, const real* b, real c2, const real* c,
                      real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = c0 * a[t] + c1 * b[t] + c2 * c[t]


cdef inline void lin4(real c0, const real* a, real c1, const real* b, real c2, const real* c,
                      real c3, const real* d, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = c0 * a[t] + c1 * b[t] + c2 * c[t] + c3 * d[t]


cdef inline void lin5(real c0, const real* a, real c1, const real* b, real c2, const real* c,
                      real c3, const real* d, real c4, const real* e, real* out, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t t
    for t in range(n):
        out[t] = c0 * a[t] + c1 * b[t] + c2 * c[t] + c3 * d[t] + c4 * e[t]


# The transforms, one table row per line: each maps the runs x[k] = src + k * src_step (n values
# each) to the runs y[k] = dst + k * dst_step.

cdef inline void runs(real* start, Py_ssize_t step, int count, real** out) noexcept nogil:
    """out[k] = start + k * step for k < count."""
    cdef int k
    for k in range(count):
        out[k] = start + k * step


cdef inline void input_rows(int m, const real* src, Py_ssize_t src_step, real* dst, Py_ssize_t dst_step,
                            Py_ssize_t n) noexcept nogil:
    """y = B^T x: a = m + 2 runs in, a out."""
    cdef real* x[6]
    cdef real* y[6]
    runs(<real*>src, src_step, m + 2, x)  # read only
    runs(dst, dst_step, m + 2, y)
    if m == 2:
        lin2(1, x[0], -1, x[2], y[0], n)
        lin2(1, x[1], 1, x[2], y[1], n)
        lin2(-1, x[1], 1, x[2], y[2], n)
        lin2(1, x[1], -1, x[3], y[3], n)
    else:
        lin3(4, x[0], -5, x[2], 1, x[4], y[0], n)
        lin4(-4, x[1], -4, x[2], 1, x[3], 1, x[4], y[1], n)
        lin4(4, x[1], -4, x[2], -1, x[3], 1, x[4], y[2], n)
        lin4(-2, x[1], -1, x[2], 2, x[3], 1, x[4], y[3], n)
        lin4(2, x[1], -1, x[2], -2, x[3], 1, x[4], y[4], n)
        lin3(4, x[1], -5, x[3], 1, x[5], y[5], n)


cdef inline void output_rows(int m, const real* src, Py_ssize_t src_step, real* dst, Py_ssize_t dst_step,
                             Py_ssize_t n) noexcept nogil:
    """y = A^T x: a = m + 2 runs in, m out."""
    cdef real* x[6]
    cdef real* y[4]
    runs(<real*>src, src_step, m + 2, x)  # read only
    runs(dst, dst_step, m, y)
    if m == 2:
        lin3(1, x[0], 1, x[1], 1, x[2], y[0], n)
        lin3(1, x[1], -1, x[2], -1, x[3], y[1], n)
    else:
        lin5(1, x[0], 1, x[1], 1, x[2], 1, x[3], 1, x[4], y[0], n)
        lin4(1, x[1], -1, x[2], 2, x[3], -2, x[4], y[1], n)
        lin4(1, x[1], 1, x[2], 4, x[3], 4, x[4], y[2], n)
        lin5(1, x[1], -1, x[2], 8, x[3], -8, x[4], 1, x[5], y[3], n)


cdef inline void gradient_rows(int m, const real* src, Py_ssize_t src_step, real* dst, Py_ssize_t dst_step,
                               Py_ssize_t n) noexcept nogil:
    """y = A x (A = (A^T)^T): m runs in, a = m + 2 out."""
    cdef real* x[4]
    cdef real* y[6]
    runs(<real*>src, src_step, m, x)  # read only
    runs(dst, dst_step, m + 2, y)
    if m == 2:
        lin1(1, x[0], y[0], n)
        lin2(1, x[0], 1, x[1], y[1], n)
        lin2(1, x[0], -1, x[1], y[2], n)
        lin1(-1, x[1], y[3], n)
    else:
        lin1(1, x[0], y[0], n)
        lin4(1, x[0], 1, x[1], 1, x[2], 1, x[3], y[1], n)
        lin4(1, x[0], -1, x[1], 1, x[2], -1, x[3], y[2], n)
        lin4(1, x[0], 2, x[1], 4, x[2], 8, x[3], y[3], n)
        lin4(1, x[0], -2, x[1], 4, x[2], -8, x[3], y[4], n)
        lin1(1, x[3], y[5], n)


cdef inline void padded_line(const real* row, Py_ssize_t W, Py_ssize_t x0, Py_ssize_t length,
                             real* line) noexcept nogil:
    """line[c] <- row[x0 + c] for c < length: zero where x0 + c is outside [0, W)."""
    cdef Py_ssize_t lo = -x0 if x0 < 0 else 0
    cdef Py_ssize_t hi = W - x0 if W - x0 < length else length
    if hi < lo:
        hi = lo
    memset(line, 0, lo * sizeof(real))
    memcpy(line + lo, row + x0 + lo, (hi - lo) * sizeof(real))
    memset(line + hi, 0, (length - hi) * sizeof(real))


cdef inline void windows(const real* line, int step, int size, Py_ssize_t count, real* dst,
                         Py_ssize_t dst_step) noexcept nogil:
    """dst[j * dst_step + q] <- line[step * q + j] for j < size, q < count: column j of count windows
    of size values, step apart."""
    cdef Py_ssize_t q
    cdef int j
    for j in range(size):
        for q in range(count):
            dst[j * dst_step + q] = line[step * q + j]


cdef inline void interleave(const real* src, Py_ssize_t src_step, int step, Py_ssize_t count, real offset,
                            real* line) noexcept nogil:
    """line[step * q + p] <- src[p * src_step + q] + offset for p < step, q < count: the inverse of
    windows of size step, plus a constant."""
    cdef Py_ssize_t q
    cdef int p
    for q in range(count):
        for p in range(step):
            line[step * q + p] = src[p * src_step + q] + offset


cdef void gather_runs(const real* plane, Py_ssize_t H, Py_ssize_t W, Py_ssize_t y0, Py_ssize_t x0,
                      int size, int step, Py_ssize_t tiles_w, Py_ssize_t T,
                      real* line, real* d) noexcept nogil:
    """d[size*i + j, tx] (runs T apart) <- plane[y0 + i, x0 + step*tx + j] for one row of tiles_w tiles of
    size x size values, i and j < size; zero outside the H x W plane.

    Row by row, the row's values from column x0 on go to line (zero-padded, step*tiles_w + size
    values), whose windows give the runs. The tile sizes in use are written out, so that the
    compiler knows the stride and the window size.
    """
    cdef Py_ssize_t i, j
    cdef real* runs_i
    for i in range(size):
        runs_i = d + size * i * T
        if y0 + i < 0 or y0 + i >= H:
            for j in range(size):
                memset(runs_i + j * T, 0, tiles_w * sizeof(real))
            continue
        padded_line(plane + (y0 + i) * W, W, x0, step * tiles_w + size, line)
        if step == 4 and size == 6:
            windows(line, 4, 6, tiles_w, runs_i, T)
        elif step == 4 and size == 4:
            windows(line, 4, 4, tiles_w, runs_i, T)
        elif step == 2 and size == 4:
            windows(line, 2, 4, tiles_w, runs_i, T)
        elif step == 2 and size == 2:
            windows(line, 2, 2, tiles_w, runs_i, T)
        else:
            windows(line, step, size, tiles_w, runs_i, T)


cdef void transform_inputs(const real* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, int pad,
                           int m, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
                           Py_ssize_t r0, Py_ssize_t r1, real* scratch, real* v) noexcept nogil:
    """v (a^2, C, T) <- B^T d B of every input tile d of tile rows [r0, r1), T = (r1 - r0) * tiles_w.

    Channel by channel, the tiles' a^2 values are gathered (through a line at scratch[2*a*a*T:])
    into scratch[:a*a*T] (d[a*i + j, t]), and
    h = d B (scratch[a*a*T:2*a*a*T], row by row) and B^T h (column by column) are formed over all T
    tiles at once.
    """
    cdef Py_ssize_t a = m + 2, T = (r1 - r0) * tiles_w
    cdef Py_ssize_t r, n, c, i, j
    cdef real* d = scratch
    cdef real* h = scratch + a * a * T
    cdef real* line = scratch + 2 * a * a * T
    for c in range(C):
        for r in range(r0, r1):
            n = r // tiles_h
            gather_runs(x + (n * C + c) * H * W, H, W, m * (r % tiles_h) - pad, -pad, a, m, tiles_w, T,
                        line, d + (r - r0) * tiles_w)
        for i in range(a):  # h = d B, row i of every tile: (B^T d_i)^T
            input_rows(m, d + a * i * T, T, h + a * i * T, T, T)
        for j in range(a):  # V = B^T h, column j of every tile; element a*i + j of channel c at v[((a*i + j)*C + c)*T]
            input_rows(m, h + j * T, a * T, v + (j * C + c) * T, a * C * T, T)


cdef void transform_outputs(const real* products, const real* bias, int m,
                            Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t tiles_h, Py_ssize_t tiles_w,
                            Py_ssize_t r0, Py_ssize_t r1, real* scratch, real* out) noexcept nogil:
    """out tiles of tile rows [r0, r1) <- A^T M A + bias, from products (a^2, F, T).

    Filter by filter, s = A^T M (scratch[:m*a*T]) and the m^2 outputs of every tile
    (from scratch[m*a*T] on, y[m*u + w] for out row m*ty + u, column m*tx + w) are formed over all T
    tiles at once; each output row's m runs are interleaved into out (through a line at
    scratch[2*a*a*T:] where the tiles hang over its edge: the rows and columns beyond OH and OW are
    dropped).
    """
    cdef Py_ssize_t a = m + 2, T = (r1 - r0) * tiles_w, plane = F * T
    cdef Py_ssize_t r, n, f, j, u, oy
    cdef const real* q
    cdef real* s = scratch
    cdef real* y = scratch + m * a * T
    cdef real* line = scratch + 2 * a * a * T
    cdef real* row
    cdef real* dst
    for f in range(F):
        q = products + f * T  # element e at q[e * plane]
        for j in range(a):  # s = A^T M, column j of every tile (s[a*u + j])
            output_rows(m, q + j * plane, a * plane, s + j * T, a * T, T)
        for u in range(m):  # y = s A, row u of every tile
            output_rows(m, s + a * u * T, T, y + m * u * T, T, T)
        for r in range(r0, r1):
            n = r // tiles_h
            oy = m * (r % tiles_h)
            for u in range(m):
                if oy + u >= OH:
                    break
                row = out + ((n * F + f) * OH + oy + u) * OW
                dst = row if m * tiles_w == OW else line  # straight into out where no tile hangs over
                if m == 4:  # the tile sizes written out, as in gather_runs
                    interleave(y + 4 * u * T + (r - r0) * tiles_w, T, 4, tiles_w, bias[f], dst)
                else:
                    interleave(y + 2 * u * T + (r - r0) * tiles_w, T, 2, tiles_w, bias[f], dst)
                if dst == line:
                    memcpy(row, line, OW * sizeof(real))


def winograd_forward(
    const real[:, :, :, ::1] x,
    const real[:, :, ::1] filters,
    const real[::1] bias,
    int m,
    int pad,
    int rows_per_task,
    real[:, ::1] inputs,
    real[:, ::1] products,
    real[:, ::1] scratch,
    real[:, :, :, ::1] out,
    int num_threads,
):
    """out (N, F, OH, OW) = conv(x, g) + bias for the 3x3 filters g whose transforms are filters (a^2, F, C).

    m: the output tile size, 2 or 4 (the callers check it). A task is rows_per_task tile rows (the
    last one fewer); inputs (num_threads, a^2*C*T) and products (num_threads, a^2*F*T) hold each
    thread's transformed tiles, T = rows_per_task * tiles_w, and scratch
    (num_threads, 2*a^2*T + m*tiles_w + a) its intermediate combinations and one image row
    (gather_runs, interleave).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = filters.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t a = m + 2
    cdef Py_ssize_t tiles_h = (OH + m - 1) // m, tiles_w = (OW + m - 1) // m
    cdef Py_ssize_t rows = N * tiles_h
    cdef Py_ssize_t task, r0, r1, e
    cdef int T
    cdef real* v
    cdef real* product
    cdef real* own
    with nogil, parallel(num_threads=num_threads):
        v = &inputs[threadid(), 0]
        product = &products[threadid(), 0]
        own = &scratch[threadid(), 0]
        for task in prange((rows + rows_per_task - 1) // rows_per_task, schedule="dynamic"):
            r0 = task * rows_per_task
            r1 = task_end(task, rows_per_task, rows)
            T = (r1 - r0) * tiles_w
            transform_inputs(&x[0, 0, 0, 0], C, H, W, pad, m, tiles_h, tiles_w, r0, r1, own, v)
            for e in range(a * a):
                # M[e] (F, T) = U[e] (F, C) @ V[e] (C, T); to BLAS, (T, F) = (T, C) @ (C, F)
                gemm("N", "N", T, F, C, v + e * C * T, T, &filters[e, 0, 0], C, 0, product + e * F * T, T)
            transform_outputs(product, &bias[0], m, F, OH, OW, tiles_h, tiles_w, r0, r1, own,
                              &out[0, 0, 0, 0])


cdef void transform_gradients(const real* dout, int m, Py_ssize_t F, Py_ssize_t OH,
                              Py_ssize_t OW, Py_ssize_t tiles_h, Py_ssize_t tiles_w, Py_ssize_t r0, Py_ssize_t r1,
                              real* scratch, real* gh) noexcept nogil:
    """gh (a^2, F, T) <- A g A^T of every m x m output-gradient tile g of tile rows [r0, r1).

    A (a, m) is A^T's transpose. Entries beyond OH and OW are zeros. Filter by filter, the tiles'
    m^2 values go to scratch[:m*m*T] (g[m*u + w, t]) and g A^T, row by row, to scratch[m*m*T:]
    (k[a*u + j, t]).
    """
    cdef Py_ssize_t a = m + 2, T = (r1 - r0) * tiles_w, plane = F * T
    cdef Py_ssize_t r, n, f, u, i, j
    cdef real* g = scratch
    cdef real* k = scratch + m * m * T
    cdef real* line = scratch + 2 * a * a * T
    for f in range(F):
        for r in range(r0, r1):
            n = r // tiles_h
            gather_runs(dout + (n * F + f) * OH * OW, OH, OW, m * (r % tiles_h), 0, m, m, tiles_w, T,
                        line, g + (r - r0) * tiles_w)
        for u in range(m):  # k = g A^T, row u of every tile
            gradient_rows(m, g + m * u * T, T, k + a * u * T, T, T)
        for j in range(a):  # A k, column j of every tile; element a*i + j of filter f at gh[((a*i + j)*F + f)*T]
            gradient_rows(m, k + j * T, a * T, gh + (j * F + f) * T, a * F * T, T)


cdef inline void add_tile_sums(const real* sums, Py_ssize_t F, Py_ssize_t T, double* bias_part) noexcept nogil:
    """bias_part[f] += sums[f * T + t] summed over t < T.

    Row 1 of A is all ones (the interpolation point 1 of F(m x m, 3x3)), so element a + 1 of A g A^T,
    the run that sums points to, is the sum of the m x m tile g (zeros beyond the output's edge).
    """
    cdef Py_ssize_t f, t
    cdef double total
    for f in range(F):
        total = 0
        for t in range(T):
            total += sums[f * T + t]
        bias_part[f] += total


def winograd_weight_gradient(
    const real[:, :, :, ::1] x,
    const real[:, :, :, ::1] dout,
    int m,
    int pad,
    int rows_per_task,
    real[:, ::1] inputs,
    real[:, ::1] products,
    real[:, ::1] scratch,
    real[:, :, :, ::1] parts,
    double[:, ::1] bias_parts,
    int num_threads,
):
    """parts[g] (a^2, F, C) <- sum over group g's tiles of (A g A^T) * (B^T d B), for the weight gradient,
    and bias_parts[g] (F,) <- the sum of dout over group g's tiles, for the bias gradient.

    The same tiles as winograd_forward: d the a x a input tile, g the m x m tile of dout
    (N, F, OH, OW) it produced, m the tile size; A = (A^T)^T (a, m). The tasks
    (rows_per_task tile rows each) are cut into P = parts.shape[0] consecutive groups; threads
    take groups as they become free, and each group's sum does not depend on which thread took
    it. The caller adds the parts up in order and applies G^T (.) G to get dw (F, C, 3, 3), and adds
    bias_parts up in order to get db.
    inputs, products, scratch: each thread's share, as in winograd_forward (products receives
    the transformed dout tiles).
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = dout.shape[1], OH = dout.shape[2], OW = dout.shape[3]
    cdef Py_ssize_t a = m + 2
    cdef Py_ssize_t tiles_h = (OH + m - 1) // m, tiles_w = (OW + m - 1) // m
    cdef Py_ssize_t rows = N * tiles_h
    cdef Py_ssize_t tasks = (rows + rows_per_task - 1) // rows_per_task
    cdef Py_ssize_t groups = parts.shape[0]
    cdef Py_ssize_t group, task, r0, r1, e
    cdef int T
    cdef real* v
    cdef real* gh
    cdef real* own
    cdef real* part
    cdef double* bias_part
    with nogil, parallel(num_threads=num_threads):
        v = &inputs[threadid(), 0]
        gh = &products[threadid(), 0]
        own = &scratch[threadid(), 0]
        for group in prange(groups, schedule="dynamic"):
            part = &parts[group, 0, 0, 0]
            bias_part = &bias_parts[group, 0]
            memset(part, 0, a * a * F * C * sizeof(real))
            memset(bias_part, 0, F * sizeof(double))
            for task in range(group * tasks // groups, (group + 1) * tasks // groups):
                r0 = task * rows_per_task
                r1 = task_end(task, rows_per_task, rows)
                T = (r1 - r0) * tiles_w
                transform_inputs(&x[0, 0, 0, 0], C, H, W, pad, m, tiles_h, tiles_w, r0, r1, own, v)
                transform_gradients(&dout[0, 0, 0, 0], m, F, OH, OW, tiles_h, tiles_w, r0, r1, own, gh)
                add_tile_sums(gh + (a + 1) * F * T, F, T, bias_part)
                for e in range(a * a):
                    # part[e] (F, C) += gh[e] (F, T) @ v[e].T (T, C); to BLAS, (C, F) += (C, T) @ (T, F)
                    gemm("T", "N", C, F, T, v + e * C * T, T, gh + e * F * T, T, 1, part + e * F * C, C)


cdef inline void scaled_sum(const double* coefs, Py_ssize_t coef_step, int count, const real* src,
                            Py_ssize_t src_step, real* out, Py_ssize_t n) noexcept nogil:
    """out[t] <- sum over k < count of coefs[k * coef_step] * src[k * src_step + t], for t < n."""
    cdef Py_ssize_t t
    cdef int k
    cdef real coef = <real>coefs[0]
    for t in range(n):
        out[t] = coef * src[t]
    for k in range(1, count):
        coef = <real>coefs[k * coef_step]
        src += src_step
        for t in range(n):
            out[t] += coef * src[t]


cdef void transform_filter_row(const real* g, const double* G, int a, Py_ssize_t f, Py_ssize_t F, Py_ssize_t C,
                               real* scratch, real* out) noexcept nogil:
    """out[a*i + j, f, c] <- (G g G^T)[i, j] for the C filters g (3 x 3 each, at g) of filter f.

    Over runs of the C channels: the filters' 9 values to scratch (gc[3*r + k, c]), then
    t = G g (t[3*i + k, c], from scratch[9*C] on) and U = t G^T straight into out.
    """
    cdef real* gc = scratch
    cdef real* t = scratch + 9 * C
    cdef Py_ssize_t c
    cdef int i, j, k
    for c in range(C):
        for k in range(9):
            gc[k * C + c] = g[9 * c + k]
    for i in range(a):
        for k in range(3):  # t[i, k] = sum over r of G[i, r] g[r, k]
            scaled_sum(G + 3 * i, 1, 3, gc + k * C, 3 * C, t + (3 * i + k) * C, C)
    for i in range(a):
        for j in range(a):  # U[i, j] = sum over k of t[i, k] G[j, k]
            scaled_sum(G + 3 * j, 1, 3, t + 3 * i * C, C, out + ((a * i + j) * F + f) * C, C)


def filter_transform(
    const real[:, :, :, ::1] w,
    const double[:, ::1] G,
    real[:, ::1] scratch,
    real[:, :, ::1] out,
    int num_threads,
):
    """out (a^2, F, C) <- G g G^T of every 3x3 filter g = w[f, c] of w (F, C, 3, 3); G (a, 3), element
    e = a*i + j of the a x a result. scratch (num_threads, (a^2 + 3*a + 9) * C): each thread's runs."""
    cdef Py_ssize_t F = w.shape[0], C = w.shape[1], f
    cdef int a = G.shape[0]
    with nogil, parallel(num_threads=num_threads):
        for f in prange(F, schedule="static"):
            transform_filter_row(&w[f, 0, 0, 0], &G[0, 0], a, f, F, C, &scratch[threadid(), 0], &out[0, 0, 0])


cdef void gradient_filter_row(const real* parts, Py_ssize_t P, const double* G, int a, Py_ssize_t f,
                              Py_ssize_t F, Py_ssize_t C, real* scratch, real* dw) noexcept nogil:
    """dw[f, c] (3 x 3) <- G^T S G for the C filters of filter f, S (a x a) the sum over the P parts of
    parts[p, a*i + j, f, c].

    Over runs of the C channels: S (scratch[:a*a*C], summed in order of p, so that the result does
    not depend on the threads), s = G^T S (s[a*k + j, c], next 3*a*C), G^T S G (next 9*C), which
    is then written to dw filter by filter.
    """
    cdef real* total = scratch
    cdef real* s = scratch + a * a * C
    cdef real* d = s + 3 * a * C
    cdef Py_ssize_t plane = a * a * F * C, c, p
    cdef int e, j, k, l
    for e in range(a * a):
        memcpy(total + e * C, parts + (e * F + f) * C, C * sizeof(real))
        for p in range(1, P):
            for c in range(C):
                total[e * C + c] += parts[p * plane + (e * F + f) * C + c]
    for k in range(3):
        for j in range(a):  # s[k, j] = sum over i of G[i, k] S[i, j]
            scaled_sum(G + k, 3, a, total + j * C, a * C, s + (a * k + j) * C, C)
    for k in range(3):
        for l in range(3):  # dw[k, l] = sum over j of s[k, j] G[j, l]
            scaled_sum(G + l, 3, a, s + a * k * C, C, d + (3 * k + l) * C, C)
    for c in range(C):
        for k in range(9):
            dw[(f * C + c) * 9 + k] = d[k * C + c]


def filter_gradient(
    const real[:, :, :, ::1] parts,
    const double[:, ::1] G,
    real[:, ::1] scratch,
    real[:, :, :, ::1] dw,
    int num_threads,
):
    """dw (F, C, 3, 3) <- G^T S G, S (a x a) the sum of parts (P, a^2, F, C) over its first axis: the
    filter transform's adjoint, which turns winograd_weight_gradient's parts into the weight gradient.
    scratch: as in filter_transform."""
    cdef Py_ssize_t P = parts.shape[0], F = parts.shape[2], C = parts.shape[3], f
    cdef int a = G.shape[0]
    with nogil, parallel(num_threads=num_threads):
        for f in prange(F, schedule="static"):
            gradient_filter_row(&parts[0, 0, 0, 0], P, &G[0, 0], a, f, F, C, &scratch[threadid(), 0],
                                &dw[0, 0, 0, 0])
