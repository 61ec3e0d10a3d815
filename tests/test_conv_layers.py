"""Gradient checks, semantics and bad-input handling of the convolutional layers (float64).

The references (``*_naive``, ``*_reference``) and the fast public functions are both
checked against numerical gradients here; tests/test_kernels.py checks that the two agree.
"""

import numpy as np
import pytest
from gradients import assert_layer_gradients

from convnet import conv_layers as cl

# (N, C, H, W, F, HH, WW, stride, pad): non-square filters, stride 2, pad > 0, N=1, C=1
CONV_CASES = [
    (2, 3, 5, 5, 2, 3, 3, 1, 1),
    (1, 1, 4, 4, 1, 2, 2, 2, 0),
    (2, 2, 7, 7, 3, 3, 5, 2, 1),
    (2, 3, 6, 5, 2, 5, 3, 1, 2),
    (1, 2, 5, 7, 2, 3, 3, 2, 0),
]
CONV_PAIRS = [
    (cl.conv_forward_naive, cl.conv_backward_naive),
    (cl.conv_forward, cl.conv_backward),
]

# (N, C, H, W, pool_height, pool_width, stride): overlapping, non-square and gapped windows
POOL_CASES = [
    (2, 3, 4, 4, 2, 2, 2),
    (2, 2, 7, 7, 3, 3, 2),
    (1, 1, 5, 5, 3, 3, 1),
    (2, 2, 6, 4, 3, 2, 1),
    (2, 1, 8, 8, 2, 2, 3),
]
POOL_PAIRS = [
    (cl.max_pool_forward_naive, cl.max_pool_backward_naive),
    (cl.max_pool_forward, cl.max_pool_backward),
]
BN_PAIRS = [
    (cl.spatial_batchnorm_forward_reference, cl.spatial_batchnorm_backward_reference),
    (cl.spatial_batchnorm_forward, cl.spatial_batchnorm_backward),
]
BN_RELU_PAIRS = [
    (cl.spatial_batchnorm_relu_forward_reference, cl.spatial_batchnorm_relu_backward_reference),
    (cl.spatial_batchnorm_relu_forward, cl.spatial_batchnorm_relu_backward),
]


def tie_free(rng, shape, spacing=0.01):
    """Distinct values at least ``spacing`` apart, so a small perturbation never moves an argmax."""
    return (rng.permutation(int(np.prod(shape))) * spacing - 1.0).reshape(shape)


@pytest.mark.parametrize("forward, backward", CONV_PAIRS, ids=["naive", "fast"])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_gradients(rng, forward, backward, case):
    N, C, H, W, F, HH, WW, stride, pad = case
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((F, C, HH, WW))
    b = rng.standard_normal(F)
    conv_param = {"stride": stride, "pad": pad}

    def conv(x, w, b):
        return forward(x, w, b, conv_param)

    # Convolution is linear in each argument, so centred differences have no truncation
    # error and a larger step only shrinks their rounding error.
    assert_layer_gradients(conv, backward, [x, w, b], [0, 1, 2], rng, h=1e-3)


def test_conv_forward_by_hand():
    """A 1x1 image row convolved with a known filter (cross-correlation, no flip)."""
    x = np.zeros((1, 1, 3, 5))
    x[0, 0, 1] = [1.0, 2.0, 3.0, 4.0, 5.0]
    w = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 1, 3)
    b = np.array([0.5])
    for forward in (cl.conv_forward_naive, cl.conv_forward):
        out, _ = forward(x, w, b, {"stride": 1, "pad": 0})
        np.testing.assert_allclose(out[0, 0, 1], [1 - 3 + 0.5, 2 - 4 + 0.5, 3 - 5 + 0.5])
        # stride 2, pad 1: rows 0, 2, 4 and columns 0, 2, 4 of the zero-padded 5x7 image
        padded, _ = forward(x, w, b, {"stride": 2, "pad": 1})
        assert padded.shape == (1, 1, 3, 3)
        np.testing.assert_allclose(padded[0, 0, 1], [0 - 2 + 0.5, 2 - 4 + 0.5, 4 - 0 + 0.5])
        np.testing.assert_allclose(padded[0, 0, [0, 2]], 0.5)


@pytest.mark.parametrize("forward, backward", POOL_PAIRS, ids=["naive", "fast"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_max_pool_gradients(rng, forward, backward, case):
    N, C, H, W, ph, pw, stride = case
    x = tie_free(rng, (N, C, H, W))
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}

    def pool(x):
        return forward(x, pool_param)

    assert_layer_gradients(pool, backward, [x], [0], rng, tol=1e-8)


@pytest.mark.parametrize("forward, backward", POOL_PAIRS, ids=["naive", "fast"])
def test_max_pool_ties_go_to_first_maximum(forward, backward):
    x = np.array([[5.0, 5.0], [5.0, 1.0]]).reshape(1, 1, 2, 2)
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert out.item() == 5.0
    dx = backward(np.ones((1, 1, 1, 1)), cache)
    np.testing.assert_array_equal(dx.reshape(2, 2), [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("forward, backward", BN_PAIRS, ids=["reference", "fast"])
@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 3, 3), (5, 2, 1, 1)], ids=str)
def test_spatial_batchnorm_gradients(rng, forward, backward, mode, shape):
    C = shape[1]
    x = 2 * rng.standard_normal(shape) + 1
    gamma = rng.standard_normal(C)
    beta = rng.standard_normal(C)
    bn_param = {"mode": mode, "running_mean": rng.standard_normal(C), "running_var": rng.random(C) + 0.5}

    def bn(x, gamma, beta):
        return forward(x, gamma, beta, bn_param)

    assert_layer_gradients(bn, backward, [x, gamma, beta], [0, 1, 2], rng)


BN_GELU_PAIRS = [
    (cl.spatial_batchnorm_gelu_forward_reference, cl.spatial_batchnorm_gelu_backward_reference),
    (cl.spatial_batchnorm_gelu_forward, cl.spatial_batchnorm_gelu_backward),
]
#: what the output of each fused activation looks like: ReLU's is >= 0 with zeros, GELU's > -0.17
#: (its minimum) with negatives
FUSED_OUTPUTS = {"relu": lambda out: np.all(out >= 0) and np.any(out == 0) and np.any(out > 0),
                 "gelu": lambda out: np.all(out > -0.17) and np.any(out < 0)}


@pytest.mark.parametrize("activation, forward, backward",
                         [("relu", *pair) for pair in BN_RELU_PAIRS] + [("gelu", *pair) for pair in BN_GELU_PAIRS],
                         ids=["relu-reference", "relu-fast", "gelu-reference", "gelu-fast"])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_spatial_batchnorm_fused_activation_gradients(rng, activation, forward, backward, mode):
    C = 3
    # Normalised values within about +-3: in GELU's far tail its slope (~1e-9 at -6) is below
    # what finite differences resolve, relative to the gradient.
    x = rng.uniform(-1.5, 1.5, (2, C, 4, 5)) + 0.3
    gamma, beta = rng.uniform(0.5, 1.2, C) * rng.choice([-1, 1], C), 0.3 * rng.standard_normal(C)
    bn_param = {"mode": mode, "running_mean": 0.3 + 0.1 * rng.standard_normal(C), "running_var": 0.6 + 0.3 * rng.random(C)}
    out, _ = forward(x, gamma, beta, bn_param)
    assert FUSED_OUTPUTS[activation](out)

    def bn_activation(x, gamma, beta):
        return forward(x, gamma, beta, bn_param)

    assert_layer_gradients(bn_activation, backward, [x, gamma, beta], [0, 1, 2], rng, h=1e-5)


def test_a_fused_cache_is_taken_only_by_its_own_backward(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    _, gelu_cache = cl.spatial_batchnorm_gelu_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="this cache comes from spatial_batchnorm_gelu_forward"):
        cl.spatial_batchnorm_relu_backward(np.ones((2, 3, 4, 4)), gelu_cache)
    _, relu_cache = cl.spatial_batchnorm_relu_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="this cache comes from spatial_batchnorm_relu_forward"):
        cl.spatial_batchnorm_gelu_backward(np.ones((2, 3, 4, 4)), relu_cache)


def test_fused_relu_cache_is_not_taken_for_plain_batchnorm(rng):
    _, cache = cl.spatial_batchnorm_forward(rng.standard_normal((2, 3, 4, 4)), np.ones(3), np.zeros(3),
                                            {"mode": "train"})
    with pytest.raises(ValueError, match="use spatial_batchnorm_backward"):
        cl.spatial_batchnorm_relu_backward(np.ones((2, 3, 4, 4)), cache)


@pytest.mark.parametrize("forward", [BN_PAIRS[0][0], BN_PAIRS[1][0]], ids=["reference", "fast"])
def test_spatial_batchnorm_train_then_test(rng, forward):
    """Train mode: per-channel mean ~ beta, std ~ gamma. After warm-up, test mode normalises
    with the running averages and leaves them unchanged."""
    N, C, H, W = 50, 3, 4, 5
    gamma = np.array([1.0, 2.0, 3.0])
    beta = np.array([0.0, -1.0, 4.0])
    bn_param = {"mode": "train"}
    x = 4 * rng.standard_normal((N, C, H, W)) + 10
    out, _ = forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), gamma, rtol=1e-4)
    for _ in range(50):
        forward(4 * rng.standard_normal((N, C, H, W)) + 10, gamma, beta, bn_param)
    frozen = (bn_param["running_mean"].copy(), bn_param["running_var"].copy())
    np.testing.assert_allclose(frozen[0], 10, atol=0.5)
    np.testing.assert_allclose(frozen[1], 16, rtol=0.15)
    bn_param["mode"] = "test"
    test_out, _ = forward(4 * rng.standard_normal((N, C, H, W)) + 10, gamma, beta, bn_param)
    assert np.all(np.abs(test_out.mean(axis=(0, 2, 3)) - beta) < 0.2 * gamma)
    np.testing.assert_allclose(test_out.std(axis=(0, 2, 3)), gamma, rtol=0.1)
    np.testing.assert_array_equal(bn_param["running_mean"], frozen[0])
    np.testing.assert_array_equal(bn_param["running_var"], frozen[1])


GROUPNORM_PAIRS = {
    "fast": (cl.spatial_groupnorm_forward, cl.spatial_groupnorm_backward),
    "reference": (cl.spatial_groupnorm_forward_reference, cl.spatial_groupnorm_backward_reference),
}


@pytest.mark.parametrize("G", [1, 2, 4])
@pytest.mark.parametrize("path", GROUPNORM_PAIRS)
def test_spatial_groupnorm_gradients(rng, G, path):
    forward, backward = GROUPNORM_PAIRS[path]
    N, C, H, W = 2, 4, 3, 3
    x = 2 * rng.standard_normal((N, C, H, W)) + 1
    gamma = rng.standard_normal((1, C, 1, 1))
    beta = rng.standard_normal((1, C, 1, 1))

    def gn(x, gamma, beta):
        return forward(x, gamma, beta, G, {"eps": 1e-5})

    assert_layer_gradients(gn, backward, [x, gamma, beta], [0, 1, 2], rng)


@pytest.mark.parametrize("path", GROUPNORM_PAIRS)
def test_spatial_groupnorm_normalises_each_group(rng, path):
    forward = GROUPNORM_PAIRS[path][0]
    x = 3 * rng.standard_normal((2, 6, 4, 4)) + 5
    out, _ = forward(x, np.ones((1, 6, 1, 1)), np.zeros((1, 6, 1, 1)), 3, {})
    groups = out.reshape(2, 3, -1)
    np.testing.assert_allclose(groups.mean(axis=2), 0, atol=1e-10)
    np.testing.assert_allclose(groups.std(axis=2), 1, rtol=1e-4)


@pytest.mark.parametrize("forward", [cl.conv_forward_naive, cl.conv_forward])
def test_conv_float32_forward_agrees_with_float64(rng, forward):
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    out64, _ = forward(x, w, b, {"stride": 1, "pad": 1})
    out32, _ = forward(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), {"stride": 1, "pad": 1})
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)


def test_other_layers_float32_forward_agrees_with_float64(rng):
    x = rng.standard_normal((4, 3, 6, 6))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    for fn in (cl.max_pool_forward_naive, cl.max_pool_forward):
        out32, _ = fn(x.astype(np.float32), pool)
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, fn(x, pool)[0], rtol=1e-6)
    for fn in (cl.spatial_batchnorm_forward_reference, cl.spatial_batchnorm_forward):
        out32, _ = fn(x.astype(np.float32), gamma.astype(np.float32), beta.astype(np.float32), {"mode": "train"})
        assert out32.dtype == np.float32
        np.testing.assert_allclose(out32, fn(x, gamma, beta, {"mode": "train"})[0], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# bad input: every public function raises before any kernel runs
# ---------------------------------------------------------------------------

CONV_FORWARDS = [cl.conv_forward_naive, cl.conv_forward]
POOL_FORWARDS = [cl.max_pool_forward_naive, cl.max_pool_forward]
BN_FORWARDS = [cl.spatial_batchnorm_forward_reference, cl.spatial_batchnorm_forward]


@pytest.mark.parametrize("forward", CONV_FORWARDS)
@pytest.mark.parametrize(
    "x_shape, w_shape, b_shape, conv_param, error, message",
    [
        ((2, 3, 8), (4, 3, 3, 3), (4,), {"stride": 1, "pad": 1}, ValueError, r"x must be 4-D.*\(2, 3, 8\)"),
        ((2, 3, 8, 8), (4, 2, 3, 3), (4,), {"stride": 1, "pad": 1}, ValueError, "w has 2 input channels"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (5,), {"stride": 1, "pad": 1}, ValueError, r"b must have shape \(4,\)"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), {"stride": 0, "pad": 1}, ValueError, r"conv_param\['stride'\]"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), {"stride": -2, "pad": 1}, ValueError, r"conv_param\['stride'\]"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), {"stride": 1, "pad": -1}, ValueError, r"conv_param\['pad'\]"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), {"stride": 1.5, "pad": 1}, TypeError, "must be an integer"),
        ((2, 3, 4, 4), (4, 3, 7, 7), (4,), {"stride": 1, "pad": 1}, ValueError, "larger than the padded input"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), {"stride": 2, "pad": 0}, ValueError, "does not tile"),
        ((2, 3, 8, 8), (4, 3, 3, 3), (4,), "stride=1", TypeError, "conv_param must be a dict"),
    ],
)
def test_conv_rejects_bad_input(forward, x_shape, w_shape, b_shape, conv_param, error, message):
    with pytest.raises(error, match=message):
        forward(np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape), conv_param)


@pytest.mark.parametrize("forward", CONV_FORWARDS)
def test_conv_rejects_mixed_dtypes(forward):
    with pytest.raises(TypeError, match="w has dtype float64 but x has dtype float32"):
        forward(np.zeros((1, 1, 3, 3), np.float32), np.zeros((1, 1, 3, 3)), np.zeros(1, np.float32), {})


@pytest.mark.parametrize("forward", POOL_FORWARDS)
@pytest.mark.parametrize(
    "x_shape, pool_param, message",
    [
        ((2, 3, 8), {"pool_height": 2, "pool_width": 2, "stride": 2}, "x must be 4-D"),
        ((2, 3, 8, 8), {"pool_height": 2, "pool_width": 2, "stride": 0}, r"pool_param\['stride'\] must be >= 1"),
        ((2, 3, 8, 8), {"pool_height": 3, "pool_width": 3, "stride": 2}, "does not tile"),
        ((2, 3, 2, 2), {"pool_height": 3, "pool_width": 3, "stride": 1}, "larger than the padded input"),
        ((2, 3, 8, 8), {"pool_height": 2, "stride": 2}, "missing the key 'pool_width'"),
    ],
)
def test_max_pool_rejects_bad_input(forward, x_shape, pool_param, message):
    with pytest.raises(ValueError, match=message):
        forward(np.zeros(x_shape), pool_param)


@pytest.mark.parametrize("forward", BN_FORWARDS)
def test_spatial_batchnorm_rejects_bad_input(rng, forward):
    x = rng.standard_normal((2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\) or \(1, 3, 1, 1\), got \(4,\)"):
        forward(x, np.ones(4), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        forward(x, np.ones(3), np.zeros((3, 1)), {"mode": "train"})
    with pytest.raises(ValueError, match="must be 'train' or 'test', got 'training'"):
        forward(x, np.ones(3), np.zeros(3), {"mode": "training"})
    with pytest.raises(ValueError, match="x must be 4-D"):
        forward(x[0], np.ones(3), np.zeros(3), {"mode": "train"})


@pytest.mark.parametrize("path", GROUPNORM_PAIRS)
def test_groupnorm_rejects_bad_groups_and_parameters(rng, path):
    forward = GROUPNORM_PAIRS[path][0]
    x = rng.standard_normal((2, 6, 3, 3))
    with pytest.raises(ValueError, match="G=4 groups must divide the 6 channels"):
        forward(x, np.ones(6), np.zeros(6), 4, {})
    with pytest.raises(ValueError, match="G must be >= 1"):
        forward(x, np.ones(6), np.zeros(6), 0, {})
    with pytest.raises(ValueError, match=r"gamma must have shape \(6,\)"):
        forward(x, np.ones(5), np.zeros(6), 3, {})


@pytest.mark.parametrize(
    "forward, backward, args",
    [
        (cl.conv_forward_naive, cl.conv_backward_naive, lambda x: (x, np.ones((2, 3, 3, 3)), np.zeros(2), {"pad": 1})),
        (cl.conv_forward, cl.conv_backward, lambda x: (x, np.ones((2, 3, 3, 3)), np.zeros(2), {"pad": 1})),
        (cl.max_pool_forward_naive, cl.max_pool_backward_naive, lambda x: (x, {"pool_height": 2, "pool_width": 2, "stride": 2})),
        (cl.max_pool_forward, cl.max_pool_backward, lambda x: (x, {"pool_height": 2, "pool_width": 2, "stride": 2})),
        (cl.spatial_batchnorm_forward_reference, cl.spatial_batchnorm_backward_reference,
         lambda x: (x, np.ones(3), np.zeros(3), {"mode": "train"})),
        (cl.spatial_batchnorm_forward, cl.spatial_batchnorm_backward,
         lambda x: (x, np.ones(3), np.zeros(3), {"mode": "train"})),
        (cl.spatial_groupnorm_forward, cl.spatial_groupnorm_backward, lambda x: (x, np.ones(3), np.zeros(3), 3, {})),
        (cl.spatial_groupnorm_forward_reference, cl.spatial_groupnorm_backward_reference,
         lambda x: (x, np.ones(3), np.zeros(3), 3, {})),
    ],
)
def test_backward_rejects_dout_of_wrong_shape(rng, forward, backward, args):
    out, cache = forward(*args(rng.standard_normal((2, 3, 4, 4))))
    wrong = np.zeros(out.shape[:-1] + (out.shape[-1] + 1,))
    with pytest.raises(ValueError, match="dout must"):
        backward(wrong, cache)


# ---------------------------------------------------------------------------
# caches: tuples (CS231n code may unpack them) whose fields are named
# ---------------------------------------------------------------------------


def test_caches_can_be_read_by_name_and_still_unpack(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    w, b = rng.standard_normal((2, 3, 3, 3)), np.zeros(2)
    for forward in (cl.conv_forward, cl.conv_forward_naive):
        _, cache = forward(x, w, b, {"stride": 1, "pad": 1})
        assert (cache.stride, cache.pad, cache.w.shape) == (1, 1, (2, 3, 3, 3))
        x_cached, w_cached, b_cached, stride, pad = cache
        np.testing.assert_array_equal(x_cached, x)
    out, cache = cl.max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    assert cache.argmax.shape == out.shape and cache.x_shape == x.shape
    _, cache = cl.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 1, "stride": 1})
    assert (cache.pool_height, cache.pool_width, cache.stride) == (2, 1, 1)
    _, cache = cl.spatial_batchnorm_relu_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    assert cache.activation == "relu" and cache.mode == "train" and cache.mean.shape == cache.inv_std.shape == (3,)
    _, cache = cl.spatial_batchnorm_relu_forward_reference(x, np.ones(3), np.zeros(3), {"mode": "train"})
    assert cache.batchnorm.x_shape == x.shape and cache.batchnorm.gamma_shape == (3,)
    _, cache = cl.spatial_groupnorm_forward(x, np.ones(3), np.zeros(3), 3, {})
    assert cache.G == 3 and cache.mean.shape == (2, 3)
    _, cache = cl.spatial_groupnorm_forward_reference(x, np.ones(3), np.zeros(3), 3, {})
    assert cache.xhat.shape == (2, 3, 1, 4, 4)
