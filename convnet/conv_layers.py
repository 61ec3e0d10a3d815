"""Convolution, max pooling and spatial normalisation on (N, C, H, W) data.

Every layer comes twice. The ``*_naive`` / ``*_reference`` functions are plain
numpy that reads like the maths; the public functions (``conv_forward``,
``max_pool_forward``, ``spatial_batchnorm_forward``, ...) run the Cython kernels
in :mod:`convnet._kernels` and are tested against the references. The CS231n
names ``conv_forward_fast`` etc. are aliases of the public functions.

Arguments are validated here, in Python, before any kernel runs: the kernels
are compiled without bounds checks.
"""

import threading
from typing import NamedTuple

import numpy as np

from convnet._kernels import batchnorm as _batchnorm_kernels
from convnet._kernels import conv as _conv_kernels
from convnet._kernels import pooling as _pooling_kernels
from convnet._kernels import winograd as _winograd_kernels
from convnet.checks import (
    as_float_array,
    as_float_like,
    require_channel_vector,
    require_int,
    require_mode,
    require_ndim,
    require_param,
    require_same_dtype,
    require_shape,
    window_output_size,
)
from convnet.layers import (
    batchnorm_backward,
    batchnorm_forward,
    gelu_backward,
    gelu_forward,
    normalize,
    normalize_backward,
    relu_backward,
    relu_forward,
    running_stats,
    update_running_stats,
)
from convnet.threads import get_num_threads, l2_cache_bytes, single_threaded_blas

#: Upper bound (bytes) on one tile of im2col columns in the fast convolution: each thread
#: unfolds this much at a time and multiplies it while it is still in the core's L2 cache.
CONV_TILE_BYTES = 512 * 2**10
#: Small images are tiled several at a time, enough for at least this many GEMM columns.
CONV_MIN_TILE_WIDTH = 256
#: Thin products (few filters times few rows of columns) get tiles of about this many
#: multiply-adds (F * C*HH*WW * tile columns), if that leaves CONV_THIN_MIN_WIDTH columns:
#: OpenBLAS multiplies products up to 10**6 multiply-adds without packing them first.
CONV_THIN_GEMM_SIZE = 10**6
CONV_THIN_MIN_WIDTH = 64

#: The backward pass sums dw over groups of images, each into a partial (C*HH*WW, F) array
#: of its own, which the threads take as they become free. Up to this many groups per
#: thread (more balance the load when another process slows one core down), within
#: CONV_PARTIALS_BYTES for all the partial arrays together.
CONV_GROUPS_PER_THREAD = 4
CONV_PARTIALS_BYTES = 8 * 2**20

#: 3x3 stride-1 convolutions with at least this many input times output channels run the
#: forward pass, dx and dw as Winograd F(m x m, 3x3) (2.25x or 4x fewer multiplications); on fewer
#: channels (a first layer's 3) its tile transforms cost more than it saves (docs/performance.md).
WINOGRAD_MIN_CHANNELS = 32 * 32
#: ... and outputs at least this many pixels high and wide: the tiles of a smaller output
#: waste too much of their work on the rows and columns beyond its edge (a 3x3 output is one
#: 4x4 tile, 36 multiplications against 81, and pays).
WINOGRAD_MIN_OUTPUT = 3
#: The output tile sizes m that _winograd_tile chooses from (each has its tables below).
WINOGRAD_TILES = (2, 4)
#: A task is at least this many tiles (so that the GEMMs are not too thin) ...
WINOGRAD_TASK_TILES = 64
#: ... or as many as keep one thread's transformed tiles (inputs and products) within this many
#: bytes: one core's L2 cache (1 MiB where the system does not say), within 256 KiB - 4 MiB so
#: that an odd report leaves neither GEMMs too thin nor too few tasks for the threads.
WINOGRAD_TASK_BYTES = min(max(l2_cache_bytes(), 2**18), 2**22)

#: F(m x m, 3x3) for each output tile size m: the tables B^T (a, a), G (a, 3) and A^T (m, a), a = m + 2,
#: for which the m outputs of a 1-D correlation of d (a values) with g (3) are A^T [(G g) * (B^T d)].
#: m = 2 interpolates at 0, 1, -1 and infinity; m = 4 at 0, 1, -1, 2, -2 and infinity (larger
#: entries, so float32 results carry a few times more rounding error).
WINOGRAD_TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float),
        np.array([[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float),
        np.array([[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
                  [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)),
}


# ---------------------------------------------------------------------------
# caches: what each backward pass needs from its forward pass. They are tuples
# (CS231n code may unpack them) whose fields can also be read by name.
# ---------------------------------------------------------------------------


class ConvCache(NamedTuple):
    """conv_forward / conv_forward_naive -> their backward passes."""

    x: np.ndarray  # (N, C, H, W); C-ordered on the fast path
    w: np.ndarray  # (F, C, HH, WW)
    b: np.ndarray  # (F,)
    stride: int
    pad: int


class PoolReferenceCache(NamedTuple):
    """max_pool_forward_naive -> max_pool_backward_naive."""

    x: np.ndarray  # (N, C, H, W)
    pool_height: int
    pool_width: int
    stride: int


class PoolCache(NamedTuple):
    """max_pool_forward -> max_pool_backward: the winners, not x."""

    x_shape: tuple  # (N, C, H, W)
    dtype: np.dtype
    argmax: np.ndarray  # (N, C, OH, OW) int32: flat index ih * W + iw of each window's maximum


class SpatialBatchnormReferenceCache(NamedTuple):
    """spatial_batchnorm_forward_reference -> its backward pass."""

    rows: tuple  # the cache of convnet.layers.batchnorm_forward on the (N*H*W, C) rows
    x_shape: tuple  # (N, C, H, W)
    gamma_shape: tuple  # (C,) or (1, C, 1, 1): the gradients come back in this shape


class BatchnormReluReferenceCache(NamedTuple):
    """spatial_batchnorm_relu_forward_reference -> its backward pass."""

    batchnorm: SpatialBatchnormReferenceCache
    relu_input: np.ndarray  # (N, C, H, W): the cache of convnet.layers.relu_forward


class BatchnormGeluReferenceCache(NamedTuple):
    """spatial_batchnorm_gelu_forward_reference -> its backward pass."""

    batchnorm: SpatialBatchnormReferenceCache
    gelu_input: np.ndarray  # (N, C, H, W): the cache of convnet.layers.gelu_forward


class BatchnormCache(NamedTuple):
    """spatial_batchnorm_forward and spatial_batchnorm_relu_forward -> spatial_batchnorm_backward."""

    x: np.ndarray  # (N, C, H, W), C-ordered
    gamma: np.ndarray  # (C,) float64
    beta: np.ndarray  # (C,) float64
    mean: np.ndarray  # (C,) float64: batch statistics (train) or running mean (test)
    inv_std: np.ndarray  # (C,) float64: 1 / sqrt(var + eps), likewise
    mode: str  # 'train' | 'test'
    activation: object  # None, 'relu' or 'gelu': what was fused onto the output
    gamma_shape: tuple


class GroupnormReferenceCache(NamedTuple):
    """spatial_groupnorm_forward_reference -> its backward pass."""

    xhat: np.ndarray  # (N, G, C/G, H, W), normalised x
    inv_std: np.ndarray  # (N, G, 1, 1, 1)
    gamma: np.ndarray  # (C,)
    gamma_shape: tuple


class GroupnormCache(NamedTuple):
    """spatial_groupnorm_forward -> spatial_groupnorm_backward."""

    x: np.ndarray  # (N, C, H, W), C-ordered
    gamma: np.ndarray  # (C,) float64
    G: int
    mean: np.ndarray  # (N, G) float64
    inv_std: np.ndarray  # (N, G) float64
    gamma_shape: tuple


# ---------------------------------------------------------------------------
# validation shared by the reference and fast paths
# ---------------------------------------------------------------------------


def _check_images(name, x):
    x = as_float_array(name, x)
    require_ndim(name, x, 4, "(N, C, H, W)")
    if 0 in x.shape:
        raise ValueError(f"{name} must have no empty axis, got shape {x.shape}")
    return x


def _conv_geometry(x, w, b, conv_param):
    """Validate a convolution's arguments; return (x, w, b, stride, pad, out_h, out_w)."""
    x = _check_images("x", x)
    w = as_float_like("w", w, x)
    b = as_float_like("b", b, x)
    require_ndim("w", w, 4, "(F, C, HH, WW)")
    if 0 in w.shape:
        raise ValueError(f"w must have no empty axis, got shape {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w has {w.shape[1]} input channels (shape {w.shape}) but x has {x.shape[1]} (shape {x.shape})"
        )
    require_shape("b", b, (w.shape[0],))
    require_same_dtype("w", w, "x", x)
    require_same_dtype("b", b, "x", x)
    if not isinstance(conv_param, dict):
        raise TypeError(f"conv_param must be a dict with 'stride' and 'pad', got {type(conv_param).__name__}")
    stride = require_int("conv_param['stride']", conv_param.get("stride", 1), 1)
    pad = require_int("conv_param['pad']", conv_param.get("pad", 0), 0)
    H, W = x.shape[2:]
    HH, WW = w.shape[2:]
    out_h = window_output_size("height", H, HH, stride, pad, "x", "filter")
    out_w = window_output_size("width", W, WW, stride, pad, "x", "filter")
    return x, w, b, stride, pad, out_h, out_w


def _pool_geometry(x, pool_param):
    """Validate a pooling's arguments; return (x, pool_h, pool_w, stride, out_h, out_w)."""
    x = _check_images("x", x)
    pool_h = require_int("pool_param['pool_height']", require_param(pool_param, "pool_param", "pool_height"), 1)
    pool_w = require_int("pool_param['pool_width']", require_param(pool_param, "pool_param", "pool_width"), 1)
    stride = require_int("pool_param['stride']", require_param(pool_param, "pool_param", "stride"), 1)
    floor = pool_param.get("floor", False)
    if not isinstance(floor, (bool, np.bool_)):
        raise TypeError(f"pool_param['floor'] must be True or False, got {floor!r}")
    H, W = x.shape[2:]
    out_h = window_output_size("height", H, pool_h, stride, 0, "x", "pool window", floor)
    out_w = window_output_size("width", W, pool_w, stride, 0, "x", "pool window", floor)
    return x, pool_h, pool_w, stride, out_h, out_w


def _check_dout(dout, shape, dtype):
    dout = as_float_array("dout", dout)
    require_shape("dout", dout, shape)
    if dout.dtype != dtype:
        raise TypeError(f"dout has dtype {dout.dtype} but the forward input had dtype {dtype}")
    return dout


# ---------------------------------------------------------------------------
# convolution: reference
# ---------------------------------------------------------------------------


def conv_forward_naive(x, w, b, conv_param):
    """Reference convolution (cross-correlation), one output position at a time.

    x: (N, C, H, W); w: (F, C, HH, WW); b: (F,); conv_param: {'stride': s >= 1, 'pad': p >= 0}
    (defaults 1 and 0). x is zero-padded by p on each side of H and W; the filter must tile
    the padded input: (H + 2p - HH) % s == 0 and likewise for W.
    Returns out (N, F, OH, OW) with OH = (H + 2p - HH) / s + 1, and a cache.
    """
    x, w, b, stride, pad, out_h, out_w = _conv_geometry(x, w, b, conv_param)
    HH, WW = w.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.empty((x.shape[0], w.shape[0], out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x_pad[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
            # out[n, f, i, j] = sum_{c, u, v} window[n, c, u, v] * w[f, c, u, v] + b[f]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, ConvCache(x, w, b, stride, pad)


def conv_backward_naive(dout, cache):
    """Backward pass of :func:`conv_forward_naive`: returns dx, dw, db shaped like x, w, b."""
    x, w, b, stride, pad = cache
    HH, WW = w.shape[2:]
    N, F = x.shape[0], w.shape[0]
    out_h = (x.shape[2] + 2 * pad - HH) // stride + 1
    out_w = (x.shape[3] + 2 * pad - WW) // stride + 1
    dout = _check_dout(dout, (N, F, out_h, out_w), x.dtype)
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(i * stride, i * stride + HH)
            cols = slice(j * stride, j * stride + WW)
            d = dout[:, :, i, j]  # (N, F)
            dw += np.tensordot(d, x_pad[:, :, rows, cols], axes=([0], [0]))
            dx_pad[:, :, rows, cols] += np.tensordot(d, w, axes=([1], [0]))
    dx = dx_pad[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return np.ascontiguousarray(dx), dw, db


# ---------------------------------------------------------------------------
# convolution: fast (per-thread tiles of im2col + single-threaded GEMM)
# ---------------------------------------------------------------------------


class _Workspace(threading.local):
    """Scratch buffers reused from call to call (one set per Python thread).

    Allocating the columns afresh on every call costs a page fault per 4 KB page.
    """

    def __init__(self):
        self.buffers = {}

    def take(self, name, shape, dtype):
        """A C-contiguous array of ``shape`` and ``dtype`` viewing the buffer called ``name``."""
        size = int(np.prod(shape))
        key = (name, np.dtype(dtype))
        buffer = self.buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[key] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)


_workspace = _Workspace()


def clear_workspace():
    """Free the fast convolution's scratch buffers (about threads * CONV_TILE_BYTES per dtype)."""
    _workspace.buffers.clear()


def _tiling(x, w, out_h, out_w, threads):
    """(tile_rows, tile_images) of the fast convolution's tiles.

    Thin products (F * C*HH*WW <= CONV_THIN_GEMM_SIZE / CONV_THIN_MIN_WIDTH) get tiles of
    about CONV_THIN_GEMM_SIZE / (F * C*HH*WW) columns: BLAS ran them 1.2-1.5x faster than
    larger tiles (docs/performance.md). Otherwise, an image whose columns (C*HH*WW, OH*OW)
    exceed CONV_TILE_BYTES is cut into tiles of as many output rows as fit (at least one),
    and smaller images are taken whole, as many side by side as fit and at least enough
    for CONV_MIN_TILE_WIDTH columns: a GEMM over a few columns only (a 7x7 image has 49)
    runs far below the peak. Whole-image tiles are then evened out into a multiple of
    ``threads`` tasks (5 tasks on 2 threads would leave one idle for a fifth of the time).
    """
    rows, plane = w[0].size, out_h * out_w
    product = w.shape[0] * rows  # multiply-adds per column of the tile
    if product * CONV_THIN_MIN_WIDTH <= CONV_THIN_GEMM_SIZE:
        width = CONV_THIN_GEMM_SIZE // product
    elif rows * plane * x.itemsize > CONV_TILE_BYTES:
        width = CONV_TILE_BYTES // (rows * x.itemsize)
    else:
        width = max(CONV_TILE_BYTES // (rows * x.itemsize), CONV_MIN_TILE_WIDTH)
    if width < plane:
        return max(1, min(out_h, width // out_w)), 1
    n_images = x.shape[0]
    tasks = -(-n_images // max(1, min(n_images, width // plane)))
    tasks = min(n_images, -(-tasks // threads) * threads)
    return out_h, -(-n_images // tasks)


def _tile_buffers(x, w, tiling, out_w, threads):
    """Each thread's columns (threads, C*HH*WW * width) and, for tiles of several images, GEMM
    result (threads, F * width), width = the columns of one tile; views of the workspace."""
    tile_rows, tile_images = tiling
    width = tile_images * tile_rows * out_w
    cols = _workspace.take("cols", (threads, w[0].size * width), x.dtype)
    products = _workspace.take("products", (threads, w.shape[0] * width if tile_images > 1 else 1), x.dtype)
    return cols, products


def _image_groups(n_images, partial_bytes, threads):
    """How many groups of images (or tasks) the backward pass sums dw over: at most
    CONV_GROUPS_PER_THREAD per thread, fewer if their partial sums would exceed
    CONV_PARTIALS_BYTES, at most one per image. Of those counts, the largest multiple of the
    threads whose largest group, taken groups / threads times, is within 1/16 of an even share
    of the images (8 tasks in 6 groups of 1 or 2 left one of 2 threads idle for a fifth of the
    time); else the largest count.
    """
    per_thread = max(1, min(CONV_GROUPS_PER_THREAD, CONV_PARTIALS_BYTES // (partial_bytes * threads)))
    most = max(1, min(n_images, per_thread * threads))
    for groups in range(most - most % threads, 0, -threads):
        if 16 * groups * -(-n_images // groups) <= 17 * n_images:
            return groups
    return most


def conv_forward(x, w, b, conv_param):
    """Convolution on the fast path; same contract and results as :func:`conv_forward_naive`.

    The threads take tiles (output rows of one image, or a few small images: _tiling) as
    they become free; per tile a thread unfolds the windows (im2col) into its workspace,
    which stays in its L2 cache, and runs one single-threaded GEMM with w (F, C*HH*WW)
    into out, then adds the bias. 3x3 stride-1 convolutions with enough channels run as
    Winograd F(m x m, 3x3) instead (_winograd_suits, _winograd_tile, convnet/_kernels/winograd.pyx): 2.25x
    (m = 2) or 4x (m = 4) fewer multiplications, results within float rounding of the direct sum.
    """
    x, w, b, stride, pad, out_h, out_w = _conv_geometry(x, w, b, conv_param)
    x = np.ascontiguousarray(x)
    b = np.ascontiguousarray(b)
    if _winograd_suits(x, w, stride, pad):
        return _winograd(x, w, b, pad, out_h, out_w), ConvCache(x, w, b, stride, pad)
    F, _, HH, WW = w.shape
    w_rows = np.ascontiguousarray(w.reshape(F, -1))
    out = np.empty((x.shape[0], F, out_h, out_w), dtype=x.dtype)
    threads = get_num_threads()
    tiling = _tiling(x, w, out_h, out_w, threads)
    cols, products = _tile_buffers(x, w, tiling, out_w, threads)
    with single_threaded_blas():
        _conv_kernels.conv_forward_tiled(x, w_rows, b, HH, WW, pad, stride, *tiling, cols, products, out, threads)
    return out, ConvCache(x, w, b, stride, pad)


def conv_backward(dout, cache, compute_dx=True, compute_dw=True):
    """Backward pass of :func:`conv_forward`: returns dx (N, C, H, W), dw (F, C, HH, WW), db (F,).

    The columns are rebuilt tile by tile rather than kept from the forward pass, which
    bounds memory at the cost of one more im2col (cheap: the tile stays in cache).
    ``compute_dx=False`` skips dx (returned as None): a network's first layer never
    needs it. ``compute_dw=False`` skips dw (returned as None): a frozen layer's weights
    need no gradient. db is always computed. Where the forward pass ran as Winograd
    (_winograd_suits), so do dx and dw.
    """
    x, w, b, stride, pad = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    out_h = (H + 2 * pad - HH) // stride + 1
    out_w = (W + 2 * pad - WW) // stride + 1
    dout = np.ascontiguousarray(_check_dout(dout, (N, F, out_h, out_w), x.dtype))
    if _winograd_suits(x, w, stride, pad):
        dx = None
        if compute_dx:  # dx is dout convolved with the flipped filters, channels swapped, padding 2 - pad
            flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
            dx = _winograd(dout, flipped, np.zeros(C, dtype=x.dtype), 2 - pad, H, W)
        if compute_dw:
            dw, db = _winograd_weight_gradient(x, dout, pad)
        else:
            dw, db = None, dout.sum(axis=(0, 2, 3))
        return dx, dw, db
    w_rows = np.ascontiguousarray(w.reshape(F, -1))
    threads = get_num_threads()
    tiling = _tiling(x, w, out_h, out_w, threads)
    cols, products = _tile_buffers(x, w, tiling, out_w, threads)
    # Each group of images sums its share of dw (transposed, (K, F)) and db; added up below, in order.
    groups = _image_groups(N, w.size * x.itemsize, threads)
    dw_parts = np.empty((groups, w_rows.shape[1], F) if compute_dw else (groups, 1, 1), dtype=x.dtype)
    db_parts = np.empty((groups, F), dtype=x.dtype)
    dx = np.empty_like(x) if compute_dx else np.empty((1, 1, 1, 1), dtype=x.dtype)
    with single_threaded_blas():
        _conv_kernels.conv_backward_tiled(x, w_rows, dout, HH, WW, pad, stride, *tiling, compute_dx, compute_dw,
                                          cols, products, dw_parts, db_parts, dx, threads)
    dw = np.ascontiguousarray(dw_parts.sum(axis=0).T).reshape(w.shape) if compute_dw else None
    return dx if compute_dx else None, dw, db_parts.sum(axis=0)


def _winograd_suits(x, w, stride, pad):
    """Whether the forward pass, dx and dw of this convolution run as Winograd F(m x m, 3x3)."""
    F, C, HH, WW = w.shape
    smaller_side = min(x.shape[2:]) + 2 * pad - 2
    return ((HH, WW, stride) == (3, 3, 1) and pad <= 2 and C * F >= WINOGRAD_MIN_CHANNELS
            and smaller_side >= WINOGRAD_MIN_OUTPUT and x.shape[0] > 0)


def _winograd_tile(out_h, out_w):
    """The m of WINOGRAD_TILES whose tiles cover an out_h x out_w output with the fewest
    multiplications, ceil(out_h / m) * ceil(out_w / m) * (m + 2)^2; the smaller m on a tie."""
    return min(WINOGRAD_TILES, key=lambda m: (-(-out_h // m) * -(-out_w // m) * (m + 2) ** 2, m))


def _along_first_axis(table, t):
    """table (P, I) applied to t (I, ...) along its first axis: (P, ...), as sums of scaled
    slices (no BLAS call, whose idle threads would compete with the kernels')."""
    return np.stack([sum(float(c) * t[i] for i, c in enumerate(row) if c) for row in table])


def _on_both_axes(table, t):
    """table t table^T over the first two axes of t (I, I, ...): (P, P, ...)."""
    left = _along_first_axis(table, t)
    return _along_first_axis(table, left.swapaxes(0, 1)).swapaxes(0, 1)


def winograd_filters_reference(w, m):
    """U (a^2, F, C): G g G^T for each 3x3 filter g of w (F, C, 3, 3), with G of F(m x m, 3x3)
    (WINOGRAD_TRANSFORMS); element e = a*i + j of the a x a result, a = m + 2. The numpy twin
    of the kernel that _winograd runs (winograd.filter_transform)."""
    G = WINOGRAD_TRANSFORMS[m][1]
    U = _on_both_axes(G, w.transpose(2, 3, 0, 1))  # (a, a, F, C): G g G^T
    return np.ascontiguousarray(U).reshape(-1, *w.shape[:2])


def winograd_weight_gradient_reference(parts, m):
    """dw (F, C, 3, 3) = G^T S G for S (a, a) the sum of parts (P, a^2, F, C) over its first axis: the
    numpy twin of winograd.filter_gradient."""
    G = WINOGRAD_TRANSFORMS[m][1]
    a = m + 2
    total = parts.sum(axis=0).reshape(a, a, *parts.shape[2:])
    return np.ascontiguousarray(_on_both_axes(G.T, total).transpose(2, 3, 0, 1))


def winograd_filters(w, m):
    """winograd_filters_reference(w, m) by the kernel: (a^2, F, C), threads over the filters."""
    out = np.empty(((m + 2) ** 2, *w.shape[:2]), dtype=w.dtype)
    _winograd_kernels.filter_transform(np.ascontiguousarray(w), WINOGRAD_TRANSFORMS[m][1],
                                       _filter_scratch(w.shape[1], m, w.dtype), out, get_num_threads())
    return out


def winograd_weight_gradient_from_parts(parts, m):
    """winograd_weight_gradient_reference(parts, m) by the kernel: dw (F, C, 3, 3), threads over the filters."""
    dw = np.empty((*parts.shape[2:], 3, 3), dtype=parts.dtype)
    _winograd_kernels.filter_gradient(parts, WINOGRAD_TRANSFORMS[m][1], _filter_scratch(parts.shape[3], m, parts.dtype),
                                      dw, get_num_threads())
    return dw


def _filter_scratch(channels, m, dtype):
    """Each thread's runs of the filter transforms (winograd.filter_transform, filter_gradient)."""
    a = m + 2
    return _workspace.take("winograd filter scratch", (get_num_threads(), (a * a + 3 * a + 9) * channels), dtype)


def _winograd_buffers(x, channels_out, out_h, out_w, m):
    """(tile rows per task, inputs, products, scratch) for F(m x m, 3x3): a task is enough tile rows
    (of m output rows) for WINOGRAD_TASK_TILES tiles, or more if a thread's transformed tiles still
    fit WINOGRAD_TASK_BYTES; the buffers are each thread's share (views of the workspace)."""
    N, C = x.shape[:2]
    a = m + 2
    tiles_w = -(-out_w // m)
    row_bytes = a * a * (C + channels_out) * tiles_w * x.itemsize
    rows = max(1, min(N * -(-out_h // m), max(-(-WINOGRAD_TASK_TILES // tiles_w), WINOGRAD_TASK_BYTES // row_bytes)))
    threads = get_num_threads()
    inputs = _workspace.take("winograd inputs", (threads, a * a * C * rows * tiles_w), x.dtype)
    products = _workspace.take("winograd products", (threads, a * a * channels_out * rows * tiles_w), x.dtype)
    scratch = _workspace.take("winograd scratch", (threads, 2 * a * a * rows * tiles_w + m * tiles_w + a), x.dtype)
    return rows, inputs, products, scratch


def _winograd(x, w, bias, pad, out_h, out_w):
    """conv(x, w) + bias (N, F, out_h, out_w) for 3x3 filters w (F, C, 3, 3), as F(m x m, 3x3)."""
    m = _winograd_tile(out_h, out_w)
    rows, inputs, products, scratch = _winograd_buffers(x, w.shape[0], out_h, out_w, m)
    out = np.empty((x.shape[0], w.shape[0], out_h, out_w), dtype=x.dtype)
    with single_threaded_blas():
        _winograd_kernels.winograd_forward(np.ascontiguousarray(x), winograd_filters(w, m), np.ascontiguousarray(bias),
                                           m, pad, rows, inputs, products, scratch, out, get_num_threads())
    return out


def _winograd_weight_gradient(x, dout, pad):
    """(dw (F, C, 3, 3), db (F,)) of a convolution that winograd_forward ran, from its input x and dout
    (N, F, OH, OW).

    Each of a few fixed groups of tasks sums its tiles' products into a partial (a^2, F, C) array, and
    its share of dout into a partial (F,) sum; the partials are added in order (reproducible bit for
    bit) and G^T (.) G turns the sum into dw.
    """
    N, C = x.shape[:2]
    F, out_h, out_w = dout.shape[1:]
    m = _winograd_tile(out_h, out_w)
    a = m + 2
    rows, inputs, products, scratch = _winograd_buffers(x, F, out_h, out_w, m)
    threads = get_num_threads()
    tasks = -(-N * -(-out_h // m) // rows)
    parts = np.empty((_image_groups(tasks, a * a * F * C * x.itemsize, threads), a * a, F, C), dtype=x.dtype)
    bias_parts = np.empty((parts.shape[0], F))
    with single_threaded_blas():
        _winograd_kernels.winograd_weight_gradient(x, dout, m, pad, rows, inputs, products, scratch, parts,
                                                   bias_parts, threads)
    return winograd_weight_gradient_from_parts(parts, m), bias_parts.sum(axis=0).astype(x.dtype)


conv_forward_fast = conv_forward
conv_backward_fast = conv_backward


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------


def max_pool_forward_naive(x, pool_param):
    """Reference max pooling, one output position at a time.

    x: (N, C, H, W); pool_param: {'pool_height', 'pool_width', 'stride', 'floor': False}; windows
    may overlap (stride < window) but must tile the input: (H - pool_height) % stride == 0, same
    for W, unless 'floor' is True: then the last rows and columns that no window fits are
    dropped (floor mode, 31 -> 15 for 2x2 windows at stride 2).
    Returns out (N, C, OH, OW) with OH = floor((H - pool_height) / stride) + 1, and a cache.
    """
    x, pool_h, pool_w, stride, out_h, out_w = _pool_geometry(x, pool_param)
    out = np.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride : i * stride + pool_h, j * stride : j * stride + pool_w]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, PoolReferenceCache(x, pool_h, pool_w, stride)


def max_pool_backward_naive(dout, cache):
    """Backward pass of :func:`max_pool_forward_naive`.

    Each output's gradient goes to the first maximum of its window in row-major order
    (np.argmax's rule, and the fast kernel's); overlapping windows add up.
    """
    x, pool_h, pool_w, stride = cache
    N, C, H, W = x.shape
    out_h = (H - pool_h) // stride + 1
    out_w = (W - pool_w) // stride + 1
    dout = _check_dout(dout, (N, C, out_h, out_w), x.dtype)
    dx = np.zeros_like(x)
    for i in range(out_h):
        for j in range(out_w):
            rows = slice(i * stride, i * stride + pool_h)
            cols = slice(j * stride, j * stride + pool_w)
            window = x[:, :, rows, cols].reshape(N, C, -1)
            winner = np.zeros_like(window)
            np.put_along_axis(winner, window.argmax(axis=2)[:, :, None], 1, axis=2)
            dx[:, :, rows, cols] += (winner * dout[:, :, i, j, None]).reshape(N, C, pool_h, pool_w)
    return dx


def max_pool_forward(x, pool_param):
    """Max pooling on the fast path; same contract and results as :func:`max_pool_forward_naive`.

    The 2x2 window with stride 2 has its own unrolled kernel. The cache keeps the
    argmax of every window (int32), not x.
    """
    x, pool_h, pool_w, stride, out_h, out_w = _pool_geometry(x, pool_param)
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
    argmax = np.empty(out.shape, dtype=np.int32)
    threads = get_num_threads()
    if pool_h == pool_w == stride == 2:
        _pooling_kernels.max_pool_forward_2x2(x, out, argmax, threads)
    else:
        _pooling_kernels.max_pool_forward(x, pool_h, pool_w, stride, out, argmax, threads)
    return out, PoolCache(x.shape, x.dtype, argmax)


def max_pool_backward(dout, cache):
    """Backward pass of :func:`max_pool_forward`: dx (N, C, H, W)."""
    x_shape, dtype, argmax = cache
    dout = np.ascontiguousarray(_check_dout(dout, argmax.shape, dtype))
    dx = np.empty(x_shape, dtype=dtype)
    _pooling_kernels.max_pool_backward(dout, argmax, dx, get_num_threads())
    return dx


max_pool_forward_fast = max_pool_forward
max_pool_backward_fast = max_pool_backward


# ---------------------------------------------------------------------------
# spatial batch normalisation
# ---------------------------------------------------------------------------


def _check_spatial_norm(x, gamma, beta):
    x = _check_images("x", x)
    C = x.shape[1]
    gamma_flat = require_channel_vector("gamma", gamma, C, like=x)
    beta_flat = require_channel_vector("beta", beta, C, like=x)
    return x, gamma_flat, beta_flat


def spatial_batchnorm_forward_reference(x, gamma, beta, bn_param):
    """Reference spatial batch norm: per-channel statistics over N, H and W.

    It is vanilla batch norm on the N*H*W feature vectors of length C, which is
    exactly how this reference computes it (transpose to (N*H*W, C) and back).
    Same arguments and results as :func:`spatial_batchnorm_forward`.
    """
    x, gamma_flat, beta_flat = _check_spatial_norm(x, gamma, beta)
    N, C, H, W = x.shape
    rows, cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, C), gamma_flat, beta_flat, bn_param)
    out = rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out), SpatialBatchnormReferenceCache(cache, x.shape, np.shape(gamma))


def spatial_batchnorm_backward_reference(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_forward_reference`: dx, dgamma, dbeta."""
    dout = as_float_array("dout", dout)
    require_shape("dout", dout, cache.x_shape)
    N, C, H, W = cache.x_shape
    dx_rows, dgamma, dbeta = batchnorm_backward(dout.transpose(0, 2, 3, 1).reshape(-1, C), cache.rows)
    dx = np.ascontiguousarray(dx_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2))
    return dx, dgamma.reshape(cache.gamma_shape), dbeta.reshape(cache.gamma_shape)


def _norm_kernel_operands(x, gamma_flat, beta_flat):
    """What the normalisation kernels take: C-ordered x, float64 (C,) gamma and beta, and an output like x."""
    x = np.ascontiguousarray(x)
    gamma64 = np.ascontiguousarray(gamma_flat, dtype=np.float64)
    beta64 = np.ascontiguousarray(beta_flat, dtype=np.float64)
    return x, gamma64, beta64, np.empty_like(x)


#: The kernels' code for the activation fused onto a batch norm (see _kernels/batchnorm.pyx).
_FUSED_ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2}


def _spatial_batchnorm(x, gamma, beta, bn_param, activation):
    """Fast spatial batch norm, optionally fused with an activation on its output (one pass over x)."""
    x, gamma_flat, beta_flat = _check_spatial_norm(x, gamma, beta)
    mode = require_mode("bn_param", require_param(bn_param, "bn_param", "mode"))
    eps = float(bn_param.get("eps", 1e-5))
    x, gamma64, beta64, out = _norm_kernel_operands(x, gamma_flat, beta_flat)
    C = x.shape[1]
    threads = get_num_threads()
    if mode == "train":
        mean, var, inv_std = np.empty(C), np.empty(C), np.empty(C)
        _batchnorm_kernels.batchnorm_train_forward(x, gamma64, beta64, eps, _FUSED_ACTIVATIONS[activation], out, mean,
                                                   var, inv_std, threads)
        update_running_stats(bn_param, mean.astype(x.dtype), var.astype(x.dtype))
    else:
        running_mean, running_var = running_stats(bn_param, C, x.dtype)
        mean = running_mean.astype(np.float64)
        inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
        _batchnorm_kernels.normalize_with(x, gamma64, beta64, mean, inv_std, _FUSED_ACTIVATIONS[activation], out,
                                          threads)
    return out, BatchnormCache(x, gamma64, beta64, mean, inv_std, mode, activation, np.shape(gamma))


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Spatial batch normalisation of x (N, C, H, W) on the fast path.

    gamma, beta: (C,) (or (1, C, 1, 1)). bn_param: {'mode': 'train'|'test', 'eps': 1e-5,
    'momentum': 0.9}; running_mean / running_var (C,) live in bn_param, are created as
    zeros / ones on first use and are updated in train mode only (biased variance, as CS231n).
    Train mode normalises each channel with its mean and variance over N, H, W;
    test mode with the running statistics. Returns out (N, C, H, W), same dtype, and a cache.
    """
    return _spatial_batchnorm(x, gamma, beta, bn_param, None)


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_forward` (or of the fused batchnorm + ReLU or GELU).

    Returns dx (N, C, H, W) and dgamma, dbeta shaped like gamma. In train mode the batch
    statistics depend on x (closed-form gradient); in test mode they are constants.
    """
    x, gamma64, beta64, mean, inv_std, mode, activation, gamma_shape = cache
    dout = np.ascontiguousarray(_check_dout(dout, x.shape, x.dtype))
    C = x.shape[1]
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(C), np.empty(C)
    _batchnorm_kernels.batchnorm_backward(
        dout, x, gamma64, beta64, mean, inv_std, mode == "train", _FUSED_ACTIVATIONS[activation], dx, dgamma, dbeta,
        get_num_threads()
    )
    return dx, dgamma.astype(x.dtype).reshape(gamma_shape), dbeta.astype(x.dtype).reshape(gamma_shape)


def spatial_batchnorm_relu_forward(x, gamma, beta, bn_param):
    """relu(spatial_batchnorm(x)) in one pass: same arguments as :func:`spatial_batchnorm_forward`.

    The backward pass recomputes the ReLU mask from x instead of storing it, so the fusion
    saves a full read and write of the activations in each direction.
    """
    return _spatial_batchnorm(x, gamma, beta, bn_param, "relu")


def _require_fused(cache, activation):
    if cache.activation != activation:
        source = f"spatial_batchnorm_{cache.activation}_forward" if cache.activation else "spatial_batchnorm_forward"
        raise ValueError(f"this cache comes from {source}; use spatial_batchnorm_backward")


def spatial_batchnorm_relu_backward(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_relu_forward`: dx, dgamma, dbeta."""
    _require_fused(cache, "relu")
    return spatial_batchnorm_backward(dout, cache)


def spatial_batchnorm_gelu_forward(x, gamma, beta, bn_param):
    """gelu(spatial_batchnorm(x)) in one pass (the exact GELU, x * Phi(x)): same arguments as
    :func:`spatial_batchnorm_forward`. Like the ReLU fusion, the backward pass recomputes the
    normalised values from x, so no intermediate is stored."""
    return _spatial_batchnorm(x, gamma, beta, bn_param, "gelu")


def spatial_batchnorm_gelu_backward(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_gelu_forward`: dx, dgamma, dbeta."""
    _require_fused(cache, "gelu")
    return spatial_batchnorm_backward(dout, cache)


def spatial_batchnorm_relu_forward_reference(x, gamma, beta, bn_param):
    """Reference of the fused layer: :func:`spatial_batchnorm_forward_reference`, then relu."""
    normalized, bn_cache = spatial_batchnorm_forward_reference(x, gamma, beta, bn_param)
    out, relu_cache = relu_forward(normalized)
    return out, BatchnormReluReferenceCache(bn_cache, relu_cache)


def spatial_batchnorm_relu_backward_reference(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_relu_forward_reference`: dx, dgamma, dbeta."""
    return spatial_batchnorm_backward_reference(relu_backward(dout, cache.relu_input), cache.batchnorm)


def spatial_batchnorm_gelu_forward_reference(x, gamma, beta, bn_param):
    """Reference of the fused layer: :func:`spatial_batchnorm_forward_reference`, then gelu."""
    normalized, bn_cache = spatial_batchnorm_forward_reference(x, gamma, beta, bn_param)
    out, gelu_cache = gelu_forward(normalized)
    return out, BatchnormGeluReferenceCache(bn_cache, gelu_cache)


def spatial_batchnorm_gelu_backward_reference(dout, cache):
    """Backward pass of :func:`spatial_batchnorm_gelu_forward_reference`: dx, dgamma, dbeta."""
    return spatial_batchnorm_backward_reference(gelu_backward(dout, cache.gelu_input), cache.batchnorm)


spatial_batchnorm_forward_fast = spatial_batchnorm_forward
spatial_batchnorm_backward_fast = spatial_batchnorm_backward


# ---------------------------------------------------------------------------
# spatial group normalisation
# ---------------------------------------------------------------------------


def _check_groupnorm(x, gamma, beta, G):
    x, gamma_flat, beta_flat = _check_spatial_norm(x, gamma, beta)
    G = require_int("G", G, 1)
    if x.shape[1] % G != 0:
        raise ValueError(f"G={G} groups must divide the {x.shape[1]} channels of x (shape {x.shape})")
    return x, gamma_flat, beta_flat, G


def spatial_groupnorm_forward_reference(x, gamma, beta, G, gn_param):
    """Group normalisation: each image's C channels split into G groups of C/G channels,
    each group standardised over its channels and H, W; then a per-channel scale and shift.

    x: (N, C, H, W); gamma, beta: (1, C, 1, 1) (or (C,)); G divides C; gn_param: {'eps': 1e-5}.
    Behaves the same in train and test mode. Returns out (N, C, H, W) and a cache.
    """
    x, gamma_flat, beta_flat, G = _check_groupnorm(x, gamma, beta, G)
    N, C, H, W = x.shape
    eps = (gn_param or {}).get("eps", 1e-5)
    groups = x.reshape(N, G, C // G, H, W)
    xhat_groups, _, _, inv_std = normalize(groups, (2, 3, 4), eps)
    xhat = xhat_groups.reshape(x.shape)
    out = gamma_flat[None, :, None, None] * xhat + beta_flat[None, :, None, None]
    return out.astype(x.dtype, copy=False), GroupnormReferenceCache(xhat_groups, inv_std, gamma_flat, np.shape(gamma))


def spatial_groupnorm_backward_reference(dout, cache):
    """Backward pass of :func:`spatial_groupnorm_forward_reference`: dx, dgamma, dbeta (shaped like gamma)."""
    xhat_groups, inv_std, gamma_flat, gamma_shape = cache
    N, G, Cg, H, W = xhat_groups.shape
    dout = as_float_array("dout", dout)
    require_shape("dout", dout, (N, G * Cg, H, W))
    xhat = xhat_groups.reshape(dout.shape)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3)).reshape(gamma_shape)
    dbeta = dout.sum(axis=(0, 2, 3)).reshape(gamma_shape)
    dxhat = (dout * gamma_flat[None, :, None, None]).reshape(xhat_groups.shape)
    dx = normalize_backward(dxhat, xhat_groups, inv_std, (2, 3, 4)).reshape(dout.shape)
    return dx.astype(dout.dtype, copy=False), dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalisation on the fast path; same contract and results as
    :func:`spatial_groupnorm_forward_reference`. Statistics per (image, group) are
    computed in float64 (two passes) straight on NCHW. Returns out (N, C, H, W) and a cache.
    """
    x, gamma_flat, beta_flat, G = _check_groupnorm(x, gamma, beta, G)
    eps = float((gn_param or {}).get("eps", 1e-5))
    x, gamma64, beta64, out = _norm_kernel_operands(x, gamma_flat, beta_flat)
    mean, inv_std = np.empty((x.shape[0], G)), np.empty((x.shape[0], G))
    _batchnorm_kernels.groupnorm_forward(x, gamma64, beta64, G, eps, out, mean, inv_std, get_num_threads())
    return out, GroupnormCache(x, gamma64, G, mean, inv_std, np.shape(gamma))


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of :func:`spatial_groupnorm_forward`: dx, dgamma, dbeta (dgamma, dbeta shaped like gamma)."""
    x, gamma64, G, mean, inv_std, gamma_shape = cache
    dout = np.ascontiguousarray(_check_dout(dout, x.shape, x.dtype))
    dx = np.empty_like(x)
    dgamma_parts, dbeta_parts = np.empty(x.shape[:2]), np.empty(x.shape[:2])
    _batchnorm_kernels.groupnorm_backward(dout, x, gamma64, mean, inv_std, G, dx, dgamma_parts, dbeta_parts,
                                          get_num_threads())
    dgamma = dgamma_parts.sum(axis=0).astype(x.dtype).reshape(gamma_shape)
    dbeta = dbeta_parts.sum(axis=0).astype(x.dtype).reshape(gamma_shape)
    return dx, dgamma, dbeta


spatial_groupnorm_forward_fast = spatial_groupnorm_forward
spatial_groupnorm_backward_fast = spatial_groupnorm_backward
