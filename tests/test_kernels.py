"""The fast (Cython) layers against the numpy references: random shapes, both dtypes,
contiguous and non-contiguous inputs, forward and every gradient, 1 and 2 threads.

The references always run in float64; the fast path runs in the dtype under test.
"""

import contextlib
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convnet
from convnet import conv_layers as cl

# Agreement bound, relative to the largest magnitude in the float64 reference result.
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}
DTYPES = [np.float64, np.float32]
LAYOUTS = ["contiguous", "fortran", "strided", "transposed"]
HYPOTHESIS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def assert_agree(actual, expected64, dtype, what):
    """actual (of ``dtype``) equals the float64 reference up to TOLERANCE[dtype] * its scale."""
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == expected64.shape, f"{what}: shape {actual.shape}, expected {expected64.shape}"
    scale = max(1.0, float(np.max(np.abs(expected64), initial=0.0)))
    worst = float(np.max(np.abs(actual.astype(np.float64) - expected64), initial=0.0))
    assert worst <= TOLERANCE[np.dtype(dtype)] * scale, f"{what}: max difference {worst:g} (scale {scale:g})"


def assert_all_agree(expected_shapes, fast, reference, dtype):
    """Each fast result agrees with its float64 reference, and both have the shape the test
    expects; ``expected_shapes`` maps each result's name to its shape, in order."""
    names = list(expected_shapes)
    assert len(fast) == len(reference) == len(names), f"{len(fast)} fast and {len(reference)} reference results"
    for name, actual, expected in zip(names, fast, reference):
        assert expected.shape == tuple(expected_shapes[name]), f"{name}: reference shape {expected.shape}"
        assert_agree(actual, expected, dtype, name)


def in_layout(a, layout):
    """The same values as ``a`` in a memory layout other than C order (or C order itself)."""
    if layout == "contiguous":
        return np.ascontiguousarray(a)
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "transposed":  # stored as (N, H, W, C), viewed as (N, C, H, W)
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    raise ValueError(layout)


def as64(*arrays):
    return [np.asarray(a, dtype=np.float64) for a in arrays]


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    """Random convolution shapes built from the output size, so the filter always tiles."""
    HH, WW = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    pad = draw(st.integers(0, min(HH, WW) - 1 if min(HH, WW) > 1 else 0))
    out_h, out_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    H = (out_h - 1) * stride + HH - 2 * pad
    W = (out_w - 1) * stride + WW - 2 * pad
    if H < 1 or W < 1:
        H, W, pad = (out_h - 1) * stride + HH, (out_w - 1) * stride + WW, 0
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    return (N, C, H, W), (F, C, HH, WW), {"stride": stride, "pad": pad}, (N, F, out_h, out_w)


def conv_both_ways(x, w, b, conv_param, dout, layout):
    """(fast results, float64 reference results): (out, dx, dw, db) each."""
    out, cache = cl.conv_forward(in_layout(x, layout), w, b, conv_param)
    fast = (out,) + cl.conv_backward(in_layout(dout, layout), cache)
    x64, w64, b64, dout64 = as64(x, w, b, dout)
    ref_out, ref_cache = cl.conv_forward_naive(x64, w64, b64, conv_param)
    return fast, (ref_out,) + cl.conv_backward_naive(dout64, ref_cache)


def conv_arrays(case, dtype, seed):
    """Random x, w, b and dout of ``dtype`` for a conv_cases() case."""
    x_shape, w_shape, _, out_shape = case
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in (x_shape, w_shape, w_shape[:1], out_shape)]


@HYPOTHESIS
@given(case=conv_cases(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       seed=st.integers(0, 2**32 - 1))
def test_conv_fast_matches_naive(case, dtype, layout, seed):
    _, _, conv_param, out_shape = case
    x, w, b, dout = conv_arrays(case, dtype, seed)
    fast, reference = conv_both_ways(x, w, b, conv_param, dout, layout)
    assert_all_agree(conv_shapes(out_shape, x, w), fast, reference, dtype)


def conv_shapes(out_shape, x, w):
    return {"out": out_shape, "dx": x.shape, "dw": w.shape, "db": w.shape[:1]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "x_shape, w_shape, stride, pad, out_shape",
    [
        ((2, 3, 9, 11), (4, 3, 3, 5), 1, 1, (2, 4, 9, 9)),  # 3x5 filter
        ((2, 3, 11, 9), (4, 3, 5, 3), 1, 2, (2, 4, 11, 11)),  # 5x3 filter
        ((2, 2, 7, 9), (3, 2, 3, 5), 2, 1, (2, 3, 4, 4)),  # non-square filter, stride 2
        ((2, 2, 9, 7), (3, 2, 3, 3), 2, 0, (2, 3, 4, 3)),  # H, W odd: not divisible by the stride
        ((1, 1, 5, 5), (1, 1, 5, 5), 1, 0, (1, 1, 1, 1)),  # filter as large as the image
        ((2, 3, 6, 6), (2, 3, 1, 1), 1, 0, (2, 2, 6, 6)),  # 1x1 convolution
    ],
    ids=["3x5", "5x3", "3x5-stride2", "odd-HW-stride2", "full-window", "1x1"],
)
def test_conv_regressions(rng, dtype, x_shape, w_shape, stride, pad, out_shape):
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    conv_param = {"stride": stride, "pad": pad}
    dout = rng.standard_normal(out_shape).astype(dtype)
    fast, reference = conv_both_ways(x, w, b, conv_param, dout, "contiguous")
    assert_all_agree(conv_shapes(out_shape, x, w), fast, reference, dtype)


def test_conv_backward_can_be_called_twice_with_one_cache(rng):
    """The backward pass reuses scratch buffers; nothing in the cache may be overwritten."""
    x = rng.standard_normal((4, 3, 8, 8))
    w, b = rng.standard_normal((2, 3, 3, 3)), np.zeros(2)
    dout = rng.standard_normal((4, 2, 8, 8))
    _, cache = cl.conv_forward(x, w, b, {"pad": 1})
    first = cl.conv_backward(dout, cache)
    cl.conv_forward(rng.standard_normal((4, 3, 8, 8)), w, b, {"pad": 1})  # reuses the workspace
    second = cl.conv_backward(dout, cache)
    assert len(first) == len(second) == 3
    for a, e in zip(second, first):
        np.testing.assert_array_equal(a, e)


@HYPOTHESIS
@given(case=conv_cases(), dtype=st.sampled_from(DTYPES),
       budget=st.sampled_from([(1, 0, 0), (200, 0, 0), (10**6, 0, 0), (200, 256, 0), (10**6, 256, 0),
                               (1, 0, 50), (1, 0, 500), (1, 0, 10**6)]),
       seed=st.integers(0, 2**32 - 1))
def test_conv_tiles_of_any_size_match_naive(case, dtype, budget, seed):
    """Tiles of one output row (tile bytes 1), of a few rows, of one whole image or of several agree,
    and so do the thin-product tiles (thin size > 0: tiles of about thin size / (F*C*HH*WW) columns)."""
    tile_bytes, min_width, thin_size = budget
    _, _, conv_param, out_shape = case
    x, w, b, dout = conv_arrays(case, dtype, seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cl, "CONV_TILE_BYTES", tile_bytes)
        patch.setattr(cl, "CONV_MIN_TILE_WIDTH", min_width)
        patch.setattr(cl, "CONV_THIN_GEMM_SIZE", thin_size)
        patch.setattr(cl, "CONV_THIN_MIN_WIDTH", 1)
        fast, reference = conv_both_ways(x, w, b, conv_param, dout, "contiguous")
    assert_all_agree(conv_shapes(out_shape, x, w), fast, reference, dtype)


@st.composite
def winograd_cases(draw):
    """3x3 stride-1 convolutions with pad 0-2 and output sizes that the tiles (2x2 or 4x4) divide or not."""
    pad = draw(st.integers(0, 2))
    H, W = draw(st.integers(max(1, 3 - 2 * pad), 11)), draw(st.integers(max(1, 3 - 2 * pad), 11))
    N, C, F = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return (N, C, H, W), (F, C, 3, 3), {"stride": 1, "pad": pad}, (N, F, H + 2 * pad - 2, W + 2 * pad - 2)


@contextlib.contextmanager
def winograd_everywhere(tiles=cl.WINOGRAD_TILES):
    """Every 3x3 stride-1 convolution runs as Winograd, with a tile size from ``tiles``; yields the list
    of what it ran: ("conv", N, C in, C out) for a forward pass or dx, ("dw", N, C, F) for a weight gradient."""
    calls = []
    convolution, weight_gradient = cl._winograd, cl._winograd_weight_gradient

    def counted_convolution(x, w, *args):
        calls.append(("conv", x.shape[0], x.shape[1], w.shape[0]))
        return convolution(x, w, *args)

    def counted_weight_gradient(x, dout, pad):
        calls.append(("dw", x.shape[0], x.shape[1], dout.shape[1]))
        return weight_gradient(x, dout, pad)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cl, "WINOGRAD_MIN_CHANNELS", 1)
        patch.setattr(cl, "WINOGRAD_MIN_OUTPUT", 1)
        patch.setattr(cl, "WINOGRAD_TILES", tiles)
        patch.setattr(cl, "_winograd", counted_convolution)
        patch.setattr(cl, "_winograd_weight_gradient", counted_weight_gradient)
        yield calls


@HYPOTHESIS
@given(case=winograd_cases(), tile=st.sampled_from([2, 4]), dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(LAYOUTS), task_size=st.sampled_from([(1, 1), (5, 3000), (1, 10**8)]),
       seed=st.integers(0, 2**32 - 1))
def test_winograd_matches_naive(case, tile, dtype, layout, task_size, seed):
    """Both tile sizes; tasks of one tile row, of a few rows or of every image at once (and so one or
    several groups of tasks for dw): forward, dx, dw and db agree."""
    x_shape, w_shape, conv_param, out_shape = case
    x, w, b, dout = conv_arrays(case, dtype, seed)
    with winograd_everywhere((tile,)) as calls, pytest.MonkeyPatch.context() as patch:
        patch.setattr(cl, "WINOGRAD_TASK_TILES", task_size[0])
        patch.setattr(cl, "WINOGRAD_TASK_BYTES", task_size[1])
        fast, reference = conv_both_ways(x, w, b, conv_param, dout, layout)
    assert_all_agree(conv_shapes(out_shape, x, w), fast, reference, dtype)
    N, C, _, _ = x_shape
    F = w_shape[0]
    assert calls == [("conv", N, C, F), ("conv", N, F, C), ("dw", N, C, F)], "forward, dx and dw ran as Winograd"


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_at_the_recipe_widths_matches_naive(rng, dtype, tile, monkeypatch):
    """256 channels in and out, a 7x7 image: the float32 error stays within the conv tolerance."""
    x = rng.standard_normal((2, 256, 7, 7)).astype(dtype)
    w = (rng.standard_normal((256, 256, 3, 3)) / 48).astype(dtype)
    b, dout = rng.standard_normal(256).astype(dtype), rng.standard_normal((2, 256, 7, 7)).astype(dtype)
    assert cl._winograd_suits(x, w, 1, 1)
    monkeypatch.setattr(cl, "WINOGRAD_TILES", (tile,))
    fast, reference = conv_both_ways(x, w, b, {"stride": 1, "pad": 1}, dout, "contiguous")
    assert_all_agree(conv_shapes((2, 256, 7, 7), x, w), fast, reference, dtype)


@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_outputs_are_the_same_bits_on_one_and_two_threads(rng, restore_threads, tile):
    x, w, b = rng.standard_normal((5, 6, 9, 8)), rng.standard_normal((7, 6, 3, 3)), rng.standard_normal(7)
    dout = rng.standard_normal((5, 7, 9, 8))
    results = []
    with winograd_everywhere((tile,)) as calls:
        for threads in (1, 2):
            convnet.set_num_threads(threads)
            out, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
            results.append([out, *cl.conv_backward(dout, cache)])
    assert len(calls) == 6
    for one, two in zip(results[0][:2], results[1][:2]):  # out and dx (dw's grouping follows the threads)
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("m", sorted(cl.WINOGRAD_TRANSFORMS))
def test_winograd_tables_compute_a_correlation(rng, m):
    """A^T [(G g) * (B^T d)] is the m outputs of d (m + 2 values) correlated with g (3 values)."""
    BT, G, AT = cl.WINOGRAD_TRANSFORMS[m]
    assert BT.shape == (m + 2, m + 2) and G.shape == (m + 2, 3) and AT.shape == (m, m + 2)
    d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
    np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), [d[i:i + 3] @ g for i in range(m)], rtol=1e-12)


@pytest.mark.parametrize("m", sorted(cl.WINOGRAD_TRANSFORMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_filter_kernels_match_their_numpy_twins(rng, restore_threads, dtype, m):
    """U = G g G^T and dw = G^T (sum of parts) G agree with numpy, with the same bits on 1 and 2 threads."""
    a = m + 2
    w = rng.standard_normal((5, 7, 3, 3)).astype(dtype)
    parts = rng.standard_normal((3, a * a, 5, 7)).astype(dtype)
    results = []
    for threads in (1, 2):
        convnet.set_num_threads(threads)
        results.append((cl.winograd_filters(w, m), cl.winograd_weight_gradient_from_parts(parts, m)))
    assert_agree(results[0][0], cl.winograd_filters_reference(w.astype(np.float64), m), dtype, "U")
    assert_agree(results[0][1], cl.winograd_weight_gradient_reference(parts.astype(np.float64), m), dtype, "dw")
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("out_size, tile", [
    ((2, 2), 2), ((3, 3), 4), ((4, 4), 4), ((5, 5), 2), ((6, 6), 2), ((7, 7), 4), ((8, 8), 4),
    ((15, 15), 4), ((31, 31), 4), ((2, 30), 2),
], ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_winograd_tile_is_the_one_with_fewest_multiplications(out_size, tile):
    """(m + 2)^2 per tile: 5x5 is 9 2x2 tiles (144) or 4 4x4 tiles (144), a tie, so 2; 7x7 is 256 or 144."""
    assert cl._winograd_tile(*out_size) == tile


@pytest.mark.parametrize("compute_dx, compute_dw", [(False, True), (True, False), (False, False)])
def test_winograd_backward_skips_what_it_is_told(rng, compute_dx, compute_dw):
    x, w, b = rng.standard_normal((3, 4, 7, 6)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    dout = rng.standard_normal((3, 5, 7, 6))
    with winograd_everywhere() as calls:
        _, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
        full = cl.conv_backward(dout, cache)
        calls.clear()
        part = cl.conv_backward(dout, cache, compute_dx=compute_dx, compute_dw=compute_dw)
    assert [call[0] for call in calls] == ["conv"] * compute_dx + ["dw"] * compute_dw
    for name, computed, expected, wanted in zip(["dx", "dw", "db"], part, full, [compute_dx, compute_dw, True]):
        if name == "db" and not compute_dw:  # summed by numpy, not by the weight gradient's kernel
            np.testing.assert_allclose(computed, expected, rtol=1e-12, err_msg=name)
        elif wanted:
            np.testing.assert_array_equal(computed, expected, err_msg=name)
        else:
            assert computed is None, f"{name} should be None"


@pytest.mark.parametrize("x_shape, w_shape, stride, pad, expected", [
    ((128, 256, 7, 7), (256, 256, 3, 3), 1, 1, True),  # the recipe's wide layers
    ((128, 64, 15, 15), (256, 64, 3, 3), 1, 1, True),
    ((128, 32, 32, 32), (32, 32, 3, 3), 1, 1, True),  # C * F = WINOGRAD_MIN_CHANNELS
    ((128, 24, 31, 31), (64, 24, 3, 3), 1, 1, True),  # the recipe's first convolution, after whitening
    ((128, 3, 32, 32), (64, 3, 3, 3), 1, 1, False),  # an RGB input: too few channels
    ((128, 16, 16, 16), (32, 16, 3, 3), 1, 1, False),
    ((128, 256, 8, 8), (256, 256, 3, 3), 2, 1, False),  # stride 2
    ((128, 256, 8, 8), (256, 256, 5, 5), 1, 2, False),  # 5x5
    ((128, 256, 8, 8), (256, 256, 3, 3), 1, 3, False),  # pad 3: dx would need a negative pad
    ((0, 256, 8, 8), (256, 256, 3, 3), 1, 1, False),  # no images
    ((128, 256, 3, 3), (256, 256, 3, 3), 1, 1, True),  # a 3x3 output: one 4x4 tile (36 against 81)
    ((128, 256, 2, 2), (256, 256, 3, 3), 1, 1, False),  # a 2x2 output: most of a tile wasted
    ((128, 256, 4, 9), (256, 256, 3, 3), 1, 1, True),
    ((128, 256, 6, 6), (256, 256, 3, 3), 1, 0, True),  # 4x4 without padding
])
def test_winograd_takes_wide_3x3_stride_1_convolutions(x_shape, w_shape, stride, pad, expected, monkeypatch):
    monkeypatch.setattr(cl, "WINOGRAD_MIN_CHANNELS", 32 * 32)
    monkeypatch.setattr(cl, "WINOGRAD_MIN_OUTPUT", 3)
    assert cl._winograd_suits(np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), stride, pad) == expected


@pytest.mark.parametrize("tile_bytes, min_width, tiling", [
    (1, 0, (1, 1)),  # one output row at a time
    (27 * 8 * 8 * 3, 0, (3, 1)),  # 3 rows of 27 x 8 float64 columns
    (27 * 64 * 8 * 2, 0, (8, 2)),  # two whole images
    (27 * 64 * 8 * 2, 256, (8, 3)),  # enough images for 256 columns (4), evened out: 2 tasks of 3 and 2
    (10**9, 0, (8, 5)),  # never more images than the batch
])
def test_conv_tiling_follows_the_budget(tile_bytes, min_width, tiling, monkeypatch):
    monkeypatch.setattr(cl, "CONV_TILE_BYTES", tile_bytes)
    monkeypatch.setattr(cl, "CONV_MIN_TILE_WIDTH", min_width)
    monkeypatch.setattr(cl, "CONV_THIN_GEMM_SIZE", 0)  # no thin-product tiles
    x, w = np.zeros((5, 3, 8, 8)), np.zeros((4, 3, 3, 3))
    assert cl._tiling(x, w, 8, 8, threads=1) == tiling


@pytest.mark.parametrize("filters, channels, out_size, tiling", [
    (32, 32, 32, (3, 1)),  # 32 x 288 multiply-adds per column: 108 columns, 3 rows of 32
    (32, 3, 32, (32, 1)),  # 32 x 27: 1157 columns, one whole 32x32 image
    (32, 3, 8, (8, 16)),  # the same at 8x8: 18 whole images, evened out to 8 tasks of 16
    (64, 64, 16, (14, 1)),  # 64 x 576: too wide for thin tiles, so CONV_TILE_BYTES: 14 rows of 16
    (256, 256, 3, (3, 22)),  # 28 images for 256 columns: 5 tasks, evened out to 6 of 22 for 2 threads
])
def test_conv_thin_products_get_tiles_of_about_a_million_multiply_adds(filters, channels, out_size, tiling,
                                                                        monkeypatch):
    monkeypatch.setattr(cl, "CONV_THIN_GEMM_SIZE", 10**6)
    monkeypatch.setattr(cl, "CONV_THIN_MIN_WIDTH", 64)
    monkeypatch.setattr(cl, "CONV_TILE_BYTES", 512 * 2**10)
    x = np.zeros((128, channels, out_size, out_size), np.float32)
    w = np.zeros((filters, channels, 3, 3), np.float32)
    assert cl._tiling(x, w, out_size, out_size, threads=2) == tiling


@pytest.mark.parametrize("groups_per_thread", [1, 2, 4, 100])
def test_conv_backward_agrees_for_any_grouping_of_the_images(rng, groups_per_thread, monkeypatch):
    """dw and db are summed over groups of images (one to seven here); every grouping agrees."""
    monkeypatch.setattr(cl, "CONV_GROUPS_PER_THREAD", groups_per_thread)
    x, w, b = rng.standard_normal((7, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    dout = rng.standard_normal((7, 4, 6, 6))
    fast, reference = conv_both_ways(x, w, b, {"stride": 1, "pad": 1}, dout, "contiguous")
    assert_all_agree(conv_shapes((7, 4, 6, 6), x, w), fast, reference, np.float64)


@pytest.mark.parametrize("n_images, partial_bytes, threads, groups", [
    (128, 1000, 2, 8),  # CONV_GROUPS_PER_THREAD per thread
    (5, 1000, 2, 5),  # at most one per image; 4 or 2 groups would give a thread 3 of 5
    (128, 3 * 2**20, 2, 2),  # the partial sums' budget allows 2 groups (at least one per thread)
    (128, 2**20 + 1, 2, 6),  # the budget allows 7: a multiple of the threads keeps their shares equal
    (8, 2**20 + 1, 2, 4),  # 6 groups of 8 tasks would be 1 or 2 tasks each: one thread would sum 3 of 8
    (74, 1000, 2, 6),  # 8 groups of 9 or 10 would give a thread 40 of 74 (1/16 is 39.3); 6 give 39
    (128, 2**30, 1, 1),
])
def test_conv_image_groups(n_images, partial_bytes, threads, groups, monkeypatch):
    monkeypatch.setattr(cl, "CONV_GROUPS_PER_THREAD", 4)
    monkeypatch.setattr(cl, "CONV_PARTIALS_BYTES", 8 * 2**20)
    assert cl._image_groups(n_images, partial_bytes, threads) == groups


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compute_dx, compute_dw", [(False, True), (True, False), (False, False)])
def test_conv_backward_skips_what_it_is_told(rng, dtype, compute_dx, compute_dw):
    """compute_dx=False -> dx None, compute_dw=False -> dw None; what is computed is unchanged."""
    x = rng.standard_normal((3, 2, 7, 5)).astype(dtype)
    w, b = rng.standard_normal((4, 2, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)
    dout = rng.standard_normal((3, 4, 4, 3)).astype(dtype)
    _, cache = cl.conv_forward(x, w, b, {"stride": 2, "pad": 1})
    full = cl.conv_backward(dout, cache)
    part = cl.conv_backward(dout, cache, compute_dx=compute_dx, compute_dw=compute_dw)
    for name, computed, expected, wanted in zip(["dx", "dw", "db"], part, full, [compute_dx, compute_dw, True]):
        if name == "db" and not compute_dw:  # summed by numpy, not by the weight gradient's kernel
            np.testing.assert_allclose(computed, expected, rtol=1e-12, err_msg=name)
        elif wanted:
            np.testing.assert_array_equal(computed, expected, err_msg=name)
        else:
            assert computed is None, f"{name} should be None"


def test_conv_from_two_python_threads_at_once(rng):
    """Each Python thread has its own workspace; concurrent calls give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [[rng.standard_normal(shape).astype(np.float32) for shape in ((6, 4, 9, 9), (5, 4, 3, 3), (5,), (6, 5, 9, 9))]
             for _ in range(4)]

    def run(case):
        x, w, b, dout = case
        out, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
        return (out, *cl.conv_backward(dout, cache))

    serial = [run(case) for case in cases]
    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(run, cases * 3))
    for got, expected in zip(concurrent, serial * 3):
        for a, e in zip(got, expected):
            np.testing.assert_array_equal(a, e)


# ---------------------------------------------------------------------------
# max pooling
# ---------------------------------------------------------------------------


@st.composite
def pool_cases(draw):
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.integers(1, 4))
    out_h, out_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (N, C, (out_h - 1) * stride + ph, (out_w - 1) * stride + pw)
    return shape, {"pool_height": ph, "pool_width": pw, "stride": stride}, (N, C, out_h, out_w)


def pool_both_ways(x, pool_param, dout, layout):
    out, cache = cl.max_pool_forward(in_layout(x, layout), pool_param)
    fast = (out, cl.max_pool_backward(in_layout(dout, layout), cache))
    x64, dout64 = as64(x, dout)
    ref_out, ref_cache = cl.max_pool_forward_naive(x64, pool_param)
    return fast, (ref_out, cl.max_pool_backward_naive(dout64, ref_cache))


@HYPOTHESIS
@given(case=pool_cases(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_fast_matches_naive(case, dtype, layout, ties, seed):
    """With or without ties: both implement 'first maximum in row-major order'."""
    shape, pool_param, out_shape = case
    rng = np.random.default_rng(seed)
    x = (rng.integers(-2, 3, size=shape) if ties else rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(out_shape).astype(dtype)
    fast, reference = pool_both_ways(x, pool_param, dout, layout)
    assert_all_agree({"out": out_shape, "dx": shape}, fast, reference, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, window, stride, out_shape",
    [((2, 3, 8, 8), 2, 2, (2, 3, 4, 4)), ((2, 3, 9, 9), 3, 2, (2, 3, 4, 4)), ((2, 3, 7, 7), 3, 1, (2, 3, 5, 5)),
     ((2, 2, 9, 7), 3, 2, (2, 2, 4, 3)), ((1, 2, 5, 5), 3, 1, (1, 2, 3, 3))],
    ids=["2x2/2", "3x3/2", "3x3/1", "odd-HW-3x3/2", "3x3/1-small"],
)
def test_max_pool_regressions(rng, dtype, shape, window, stride, out_shape):
    pool_param = {"pool_height": window, "pool_width": window, "stride": stride}
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(out_shape).astype(dtype)
    fast, reference = pool_both_ways(x, pool_param, dout, "contiguous")
    assert_all_agree({"out": out_shape, "dx": shape}, fast, reference, dtype)


def test_max_pool_propagates_nan():
    x = np.array([[1.0, np.nan], [3.0, 2.0]]).reshape(1, 1, 2, 2)
    for forward in (cl.max_pool_forward, cl.max_pool_forward_naive):
        out, _ = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
        assert np.isnan(out.item())


@st.composite
def floor_pool_cases(draw):
    """Inputs one to stride - 1 rows / columns longer than a tiling one: floor mode drops them."""
    window, stride = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    out_h, out_w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    extra_h, extra_w = draw(st.integers(0, stride - 1)), draw(st.integers(0, stride - 1))
    N, C = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shape = (N, C, (out_h - 1) * stride + window + extra_h, (out_w - 1) * stride + window + extra_w)
    pool_param = {"pool_height": window, "pool_width": window, "stride": stride, "floor": True}
    return shape, pool_param, (N, C, out_h, out_w)


@HYPOTHESIS
@given(case=floor_pool_cases(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       seed=st.integers(0, 2**32 - 1))
def test_max_pool_floor_mode_fast_matches_naive(case, dtype, layout, seed):
    shape, pool_param, out_shape = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    dout = rng.standard_normal(out_shape).astype(dtype)
    fast, reference = pool_both_ways(x, pool_param, dout, layout)
    assert_all_agree({"out": out_shape, "dx": shape}, fast, reference, dtype)


@pytest.mark.parametrize("forward", [cl.max_pool_forward, cl.max_pool_forward_naive], ids=["fast", "naive"])
def test_max_pool_floor_mode_drops_the_last_row_and_column(rng, forward):
    """31 -> 15 with 2x2 windows at stride 2: row and column 30 are read by no window; the default
    (strict) refuses the input, and 'floor' must be a bool."""
    x = rng.standard_normal((2, 3, 31, 31))
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": True})
    assert out.shape == (2, 3, 15, 15)
    np.testing.assert_array_equal(out, x[:, :, :30, :30].reshape(2, 3, 15, 2, 15, 2).max(axis=(3, 5)))
    backward = cl.max_pool_backward if forward is cl.max_pool_forward else cl.max_pool_backward_naive
    dx = backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and not dx[:, :, 30].any() and not dx[:, :, :, 30].any() and dx.sum() == out.size
    with pytest.raises(ValueError, match=r"pool window height 2 with stride 2 does not tile the padded input height 31"):
        forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(TypeError, match=r"pool_param\['floor'\] must be True or False, got 'yes'"):
        forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2, "floor": "yes"})


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_backward_without_dw_gives_the_same_dx_and_db(rng, dtype):
    x = rng.standard_normal((3, 2, 6, 6)).astype(dtype)
    w, b = rng.standard_normal((4, 2, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)
    out, cache = cl.conv_forward(x, w, b, {"stride": 1, "pad": 1})
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = cl.conv_backward(dout, cache)
    dx_only, no_dw, db_only = cl.conv_backward(dout, cache, compute_dw=False)
    assert no_dw is None and dw is not None
    np.testing.assert_array_equal(dx_only, dx)
    np.testing.assert_array_equal(db_only, db)
    neither, no_dw, db_alone = cl.conv_backward(dout, cache, compute_dx=False, compute_dw=False)
    assert neither is None and no_dw is None
    np.testing.assert_array_equal(db_alone, db)


# ---------------------------------------------------------------------------
# GELU
# ---------------------------------------------------------------------------


@HYPOTHESIS
@given(shape=st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5)),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_gelu_fast_matches_reference(shape, dtype, layout, seed):
    from convnet import layers

    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    out, cache = layers.gelu_forward_fast(in_layout(x, layout))
    fast = (out, layers.gelu_backward_fast(in_layout(dout, layout), cache))
    x64, dout64 = as64(x, dout)
    ref_out, ref_cache = layers.gelu_forward(x64)
    assert_all_agree({"out": shape, "dx": shape}, fast, (ref_out, layers.gelu_backward(dout64, ref_cache)), dtype)


def test_float32_gelu_is_accurate_to_a_few_ulps():
    """The float32 kernel computes Phi and phi without libm (so that it vectorises): on a fine grid
    over [-15, 15] it stays within a few float32 ulps of the float64 reference, and the tails and
    special values come out right."""
    from convnet import layers

    x64 = np.concatenate([np.linspace(-15, 15, 300_001), [0.0, -0.0, 1e-30, -1e-30, 13.0, -13.0, 50.0, -50.0]])
    x = x64.astype(np.float32)
    out, cache = layers.gelu_forward_fast(x)
    slope = layers.gelu_backward_fast(np.ones_like(x), cache)
    ref_out, ref_cache = layers.gelu_forward(x.astype(np.float64))
    ref_slope = layers.gelu_backward(np.ones(len(x)), ref_cache)
    assert np.abs(out - ref_out).max() <= 1e-6 * 15 and np.abs(slope - ref_slope).max() <= 5e-7
    scale = np.maximum(np.abs(ref_out), 1e-30)
    assert np.max((np.abs(out - ref_out) / scale)[np.abs(x64) < 8]) < 1e-5  # relative, tails included
    assert out[-2] == 50 and out[-1] == 0 and slope[-2] == 1 and slope[-1] == 0
    special, special_cache = layers.gelu_forward_fast(np.array([np.nan, np.inf], np.float32))
    assert np.isnan(special[0]) and special[1] == np.inf
    assert np.isnan(layers.gelu_backward_fast(np.ones(2, np.float32), special_cache)[0])


def test_gelu_fast_rejects_bad_input(rng):
    from convnet import layers

    with pytest.raises(TypeError, match="x must be a float32 or float64 array, got dtype int64"):
        layers.gelu_forward_fast(np.arange(4))
    _, cache = layers.gelu_forward_fast(rng.standard_normal((2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 3\), got \(3, 2\)"):
        layers.gelu_backward_fast(np.zeros((3, 2), np.float32), cache)
    with pytest.raises(TypeError, match="dout has dtype float64 but the forward input had dtype float32"):
        layers.gelu_backward_fast(np.zeros((2, 3)), cache)


# ---------------------------------------------------------------------------
# spatial batch normalisation
# ---------------------------------------------------------------------------


def norm_shapes(x, gamma):
    """What a normalisation layer returns: out and dx shaped like x, dgamma and dbeta like gamma."""
    return {"out": x.shape, "dx": x.shape, "dgamma": gamma.shape, "dbeta": gamma.shape}


def batchnorm_both_ways(x, gamma, beta, mode, dout, layout, activation=None):
    """Fast and reference spatial batch norm, with the activation (None, 'relu', 'gelu') fused on."""
    C = x.shape[1]
    running = {"running_mean": np.linspace(-1, 1, C), "running_var": np.linspace(0.5, 2, C)}
    fast_param = {"mode": mode, **{k: v.astype(x.dtype) for k, v in running.items()}}
    name = f"spatial_batchnorm_{activation}" if activation else "spatial_batchnorm"
    fast_pair = (getattr(cl, f"{name}_forward"), getattr(cl, f"{name}_backward"))
    ref_pair = (getattr(cl, f"{name}_forward_reference"), getattr(cl, f"{name}_backward_reference"))
    out, cache = fast_pair[0](in_layout(x, layout), gamma, beta, fast_param)
    fast = (out,) + fast_pair[1](in_layout(dout, layout), cache)
    ref_param = {"mode": mode, **{k: v.astype(x.dtype).astype(np.float64) for k, v in running.items()}}
    x64, gamma64, beta64, dout64 = as64(x, gamma, beta, dout)
    ref_out, ref_cache = ref_pair[0](x64, gamma64, beta64, ref_param)
    reference = (ref_out,) + ref_pair[1](dout64, ref_cache)
    for key in running:  # both update (train) or keep (test) their running statistics alike
        assert_agree(fast_param[key], ref_param[key], x.dtype, key)
    return fast, reference


@HYPOTHESIS
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6)),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), mode=st.sampled_from(["train", "test"]),
       activation=st.sampled_from([None, "relu", "gelu"]), seed=st.integers(0, 2**32 - 1))
def test_spatial_batchnorm_fast_matches_reference(shape, dtype, layout, mode, activation, seed):
    if mode == "train" and shape[0] * shape[2] * shape[3] < 2:
        shape = (2,) + shape[1:]  # one value per channel has zero variance: nothing to compare
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal(shape) + 2).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    dout = rng.standard_normal(shape).astype(dtype)
    fast, reference = batchnorm_both_ways(x, gamma, beta, mode, dout, layout, activation)
    assert_all_agree(norm_shapes(x, gamma), fast, reference, dtype)


def test_spatial_batchnorm_float32_is_stable_for_large_means(rng):
    """Mean 1000, std 1: a one-pass E[x^2] - E[x]^2 in float32 would lose every digit."""
    x64 = rng.standard_normal((8, 4, 16, 16)) + 1000.0
    x = x64.astype(np.float32)
    gamma, beta = np.ones(4, np.float32), np.zeros(4, np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    fast, reference = batchnorm_both_ways(x, gamma, beta, "train", dout, "contiguous")
    assert_all_agree(norm_shapes(x, gamma), fast, reference, np.float32)


def test_spatial_batchnorm_accepts_broadcastable_gamma(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    out, cache = cl.spatial_batchnorm_forward(x, np.ones((1, 3, 1, 1)), np.zeros((1, 3, 1, 1)), {"mode": "train"})
    _, dgamma, dbeta = cl.spatial_batchnorm_backward(np.ones_like(x), cache)
    assert dgamma.shape == dbeta.shape == (1, 3, 1, 1)


# ---------------------------------------------------------------------------
# spatial group normalisation
# ---------------------------------------------------------------------------


def groupnorm_both_ways(x, gamma, beta, G, dout, layout):
    out, cache = cl.spatial_groupnorm_forward(in_layout(x, layout), gamma, beta, G, {"eps": 1e-5})
    fast = (out,) + cl.spatial_groupnorm_backward(in_layout(dout, layout), cache)
    x64, gamma64, beta64, dout64 = as64(x, gamma, beta, dout)
    ref_out, ref_cache = cl.spatial_groupnorm_forward_reference(x64, gamma64, beta64, G, {"eps": 1e-5})
    reference = (ref_out,) + cl.spatial_groupnorm_backward_reference(dout64, ref_cache)
    return fast, reference


@HYPOTHESIS
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5)),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_spatial_groupnorm_fast_matches_reference(shape, dtype, layout, seed):
    N, G, per_group, H, W = shape
    if per_group * H * W < 2:
        per_group = 2  # one value per group has zero variance: nothing to compare
    C = G * per_group
    rng = np.random.default_rng(seed)
    x = (3 * rng.standard_normal((N, C, H, W)) + 2).astype(dtype)
    gamma = rng.standard_normal(C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    dout = rng.standard_normal(x.shape).astype(dtype)
    fast, reference = groupnorm_both_ways(x, gamma, beta, G, dout, layout)
    assert_all_agree(norm_shapes(x, gamma), fast, reference, dtype)


def test_spatial_groupnorm_float32_is_stable_for_large_means(rng):
    x = (rng.standard_normal((4, 8, 16, 16)) + 1000.0).astype(np.float32)
    gamma, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    fast, reference = groupnorm_both_ways(x, gamma, beta, 4, dout, "contiguous")
    assert_all_agree(norm_shapes(x, gamma), fast, reference, np.float32)


# ---------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    before = convnet.get_num_threads()
    yield
    convnet.set_num_threads(before)


def all_fast_layers(x, dout_rng):
    """Forward and backward of every fast layer on x; returns the list of results."""
    C = x.shape[1]
    results = []
    w = dout_rng.standard_normal((5, C, 3, 3)).astype(x.dtype)
    out, cache = cl.conv_forward(x, w, np.zeros(5, x.dtype), {"stride": 1, "pad": 1})
    results += [out, *cl.conv_backward(dout_rng.standard_normal(out.shape).astype(x.dtype), cache)]
    out, cache = cl.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    results += [out, cl.max_pool_backward(dout_rng.standard_normal(out.shape).astype(x.dtype), cache)]
    out, cache = cl.max_pool_forward(x, {"pool_height": 3, "pool_width": 3, "stride": 1})
    results += [out, cl.max_pool_backward(dout_rng.standard_normal(out.shape).astype(x.dtype), cache)]
    out, cache = cl.spatial_batchnorm_forward(x, np.ones(C, x.dtype), np.zeros(C, x.dtype), {"mode": "train"})
    results += [out, *cl.spatial_batchnorm_backward(dout_rng.standard_normal(out.shape).astype(x.dtype), cache)]
    out, cache = cl.spatial_groupnorm_forward(x, np.ones(C, x.dtype), np.zeros(C, x.dtype), 2, {})
    results += [out, *cl.spatial_groupnorm_backward(dout_rng.standard_normal(out.shape).astype(x.dtype), cache)]
    return results


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_agree(rng, restore_threads, dtype):
    x = rng.standard_normal((4, 6, 8, 8)).astype(dtype)
    convnet.set_num_threads(1)
    single = all_fast_layers(x, np.random.default_rng(7))
    convnet.set_num_threads(2)
    double = all_fast_layers(x, np.random.default_rng(7))
    assert len(single) == len(double) == 16  # 4 conv, 2 + 2 pool, 4 batch norm, 4 group norm
    for a, b in zip(single, double):
        assert_agree(b, a.astype(np.float64), dtype, "2 threads vs 1")


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="set_num_threads expects an integer n >= 1"):
        convnet.set_num_threads(bad)


# ---------------------------------------------------------------------------
# nothing invalid reaches a kernel
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: cl.conv_forward(np.zeros((1, 1, 4, 4), np.int64), np.zeros((1, 1, 3, 3)), np.zeros(1), {}),
        lambda: cl.conv_forward(np.zeros((1, 1, 4, 4), np.float16), np.zeros((1, 1, 3, 3), np.float16),
                                np.zeros(1, np.float16), {}),
        lambda: cl.max_pool_forward(np.zeros((1, 1, 4, 4), bool), {"pool_height": 2, "pool_width": 2, "stride": 2}),
        lambda: cl.spatial_batchnorm_forward(np.zeros((1, 1, 4, 4), object), np.ones(1), np.zeros(1), {"mode": "train"}),
    ],
    ids=["int64-conv", "float16-conv", "bool-pool", "object-batchnorm"],
)
def test_unsupported_dtypes_raise_type_error(call):
    with pytest.raises(TypeError, match="must be a float32 or float64 array"):
        call()


def test_backward_rejects_dout_of_another_dtype(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    _, cache = cl.conv_forward(x, np.ones((2, 3, 3, 3), np.float32), np.zeros(2, np.float32), {"pad": 1})
    with pytest.raises(TypeError, match="dout has dtype float64 but the forward input had dtype float32"):
        cl.conv_backward(np.zeros((2, 2, 4, 4)), cache)


# ---------------------------------------------------------------------------
# one structure for every kernel
# ---------------------------------------------------------------------------

KERNEL_DIR = Path(convnet.__file__).parent / "_kernels"
ARGUMENT_KINDS = ["input", "scalar", "output", "num_threads"]  # the one order every kernel follows


def argument_kind(declaration):
    """input (a read-only array), scalar, output (a writable array) or num_threads."""
    if declaration == "int num_threads":
        return "num_threads"
    if "[" in declaration:
        return "input" if declaration.startswith("const ") else "output"
    assert re.fullmatch(r"(int|double|bint|Py_ssize_t) \w+", declaration), f"unexpected argument {declaration!r}"
    return "scalar"


def kernel_definitions():
    """(file, name, source of the argument list) of every Python-visible kernel taking arrays."""
    found = []
    for source in sorted(KERNEL_DIR.glob("*.pyx")):
        for match in re.finditer(r"^def (\w+)\((.*?)\):", source.read_text(), re.S | re.M):
            if "[" in match.group(2):
                found.append((source.name, match.group(1), match.group(2)))
    return found


def test_the_kernel_sources_are_found():
    names = {name for _, name, _ in kernel_definitions()}
    assert {"conv_forward_tiled", "conv_backward_tiled", "max_pool_forward", "batchnorm_backward", "groupnorm_backward"} <= names


@pytest.mark.parametrize("source, name, arguments", [pytest.param(*d, id=d[1]) for d in kernel_definitions()])
def test_kernel_arguments_are_inputs_scalars_outputs_then_num_threads(source, name, arguments):
    lines = arguments.split("\n")
    assert lines[0] == "" and lines[-1] == "", f"{name}: one argument per line, after 'def {name}('"
    declarations = [line.strip() for line in lines[1:-1]]
    assert all(d.endswith(",") for d in declarations), f"{name}: one argument per line, each ending in ','"
    kinds = [argument_kind(d.rstrip(",")) for d in declarations]
    assert kinds[-1] == "num_threads" and kinds.count("num_threads") == 1, f"{name}: num_threads comes last"
    order = [ARGUMENT_KINDS.index(kind) for kind in kinds]
    assert order == sorted(order), f"{name} ({source}): arguments in the order {kinds}, expected {ARGUMENT_KINDS}"


def test_the_fused_float_type_is_declared_once_in_a_pxd():
    sources = {path.name: path.read_text() for path in [*KERNEL_DIR.glob("*.pyx"), *KERNEL_DIR.glob("*.pxd")]}
    declarations = [name for name, text in sources.items() if "ctypedef fused" in text]
    assert declarations == ["floats.pxd"]
    for name, text in sources.items():
        if name.endswith(".pyx") and re.search(r"\breal\b", text):
            assert "from convnet._kernels.floats cimport real" in text, f"{name} must cimport real from floats.pxd"

