"""Gradient checks and semantics of the numpy layers in convnet.layers (float64)."""

import numpy as np
import pytest
from gradients import assert_layer_gradients

from convnet import layers
from convnet.gradient_check import eval_numerical_gradient, rel_error


def test_affine_gradients(rng):
    x = rng.standard_normal((4, 2, 3))
    w = rng.standard_normal((6, 5))
    b = rng.standard_normal(5)
    assert_layer_gradients(layers.affine_forward, layers.affine_backward, [x, w, b], [0, 1, 2], rng)


def test_affine_forward_matches_matrix_product(rng):
    x = rng.standard_normal((3, 2, 2))
    w = rng.standard_normal((4, 7))
    b = rng.standard_normal(7)
    out, _ = layers.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(3, 4) @ w + b)


def test_relu_gradient_away_from_kink(rng):
    x = rng.standard_normal((5, 6))
    x[np.abs(x) < 1e-3] = 0.5  # the kink at 0 has no gradient to check
    assert_layer_gradients(layers.relu_forward, layers.relu_backward, [x], [0], rng)


def test_relu_zeroes_negatives():
    out, _ = layers.relu_forward(np.array([[-2.0, 0.0, 3.0]]))
    np.testing.assert_array_equal(out, [[0.0, 0.0, 3.0]])


@pytest.mark.parametrize("mode", ["train", "test"])
def test_batchnorm_gradients(rng, mode):
    x = 3 * rng.standard_normal((6, 4)) + 2
    gamma = rng.standard_normal(4)
    beta = rng.standard_normal(4)
    bn_param = {"mode": mode, "running_mean": rng.standard_normal(4), "running_var": rng.random(4) + 0.5}

    def forward(x, gamma, beta):
        return layers.batchnorm_forward(x, gamma, beta, bn_param)

    assert_layer_gradients(forward, layers.batchnorm_backward, [x, gamma, beta], [0, 1, 2], rng)


def test_batchnorm_train_normalises_and_test_uses_running_averages(rng):
    N, D = 1000, 3
    gamma = np.array([1.0, 2.0, 3.0])
    beta = np.array([0.0, -1.0, 4.0])
    bn_param = {"mode": "train"}
    x = 5 * rng.standard_normal((N, D)) + 11
    out, _ = layers.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-4)
    for _ in range(200):
        layers.batchnorm_forward(5 * rng.standard_normal((N, D)) + 11, gamma, beta, bn_param)
    frozen = {k: v.copy() for k, v in bn_param.items() if k.startswith("running")}
    bn_param["mode"] = "test"
    test_out, _ = layers.batchnorm_forward(5 * rng.standard_normal((N, D)) + 11, gamma, beta, bn_param)
    assert np.all(np.abs(test_out.mean(axis=0) - beta) < 0.15 * gamma)
    np.testing.assert_allclose(test_out.std(axis=0), gamma, rtol=0.15)
    for key, value in frozen.items():
        np.testing.assert_array_equal(bn_param[key], value)


def test_batchnorm_running_average_uses_momentum(rng):
    x = rng.standard_normal((10, 2))
    bn_param = {"mode": "train", "momentum": 0.8, "running_mean": np.ones(2), "running_var": np.ones(2)}
    layers.batchnorm_forward(x, np.ones(2), np.zeros(2), bn_param)
    np.testing.assert_allclose(bn_param["running_mean"], 0.8 + 0.2 * x.mean(axis=0))
    np.testing.assert_allclose(bn_param["running_var"], 0.8 + 0.2 * x.var(axis=0))


def test_layernorm_gradients(rng):
    x = 2 * rng.standard_normal((4, 5)) - 1
    gamma = rng.standard_normal(5)
    beta = rng.standard_normal(5)

    def forward(x, gamma, beta):
        return layers.layernorm_forward(x, gamma, beta, {"eps": 1e-5})

    assert_layer_gradients(forward, layers.layernorm_backward, [x, gamma, beta], [0, 1, 2], rng)


def test_layernorm_normalises_each_row(rng):
    x = 4 * rng.standard_normal((3, 50)) + 7
    out, _ = layers.layernorm_forward(x, np.ones(50), np.zeros(50), {})
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=1), 1, rtol=1e-4)


def test_dropout_keeps_expected_fraction_and_scales(rng):
    x = rng.standard_normal((500, 500)) + 10
    for p in (0.25, 0.6):
        out, _ = layers.dropout_forward(x, {"p": p, "mode": "train", "seed": 3})
        kept = out != 0
        assert abs(kept.mean() - p) < 0.01
        np.testing.assert_allclose(out[kept], x[kept] / p)
        test_out, _ = layers.dropout_forward(x, {"p": p, "mode": "test"})
        np.testing.assert_array_equal(test_out, x)


def test_dropout_gradient_with_fixed_mask(rng):
    x = rng.standard_normal((6, 7))

    def forward(x):
        return layers.dropout_forward(x, {"p": 0.7, "mode": "train", "seed": 11})

    assert_layer_gradients(forward, layers.dropout_backward, [x], [0], rng)


def test_dropout_uses_the_given_generator():
    x = np.ones((4, 100))
    a, _ = layers.dropout_forward(x, {"p": 0.5, "mode": "train", "rng": np.random.default_rng(5)})
    b, _ = layers.dropout_forward(x, {"p": 0.5, "mode": "train", "rng": np.random.default_rng(5)})
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [0, -0.1, 1.5])
def test_dropout_rejects_keep_probability_outside_unit_interval(p):
    with pytest.raises(ValueError, match=r"dropout_param\['p'\]"):
        layers.dropout_forward(np.ones((2, 2)), {"p": p, "mode": "train"})


@pytest.mark.parametrize("loss_fn", [layers.softmax_loss, layers.svm_loss])
def test_loss_gradients(rng, loss_fn):
    x = rng.standard_normal((8, 5))
    y = rng.integers(5, size=8)
    _, dx = loss_fn(x, y)
    numerical = eval_numerical_gradient(lambda v: loss_fn(v, y)[0], x, verbose=False)
    assert rel_error(numerical, dx) < 1e-7


def test_softmax_loss_of_uniform_scores_is_log_classes():
    loss, _ = layers.softmax_loss(np.zeros((4, 10)), np.arange(4))
    assert loss == pytest.approx(np.log(10))


def test_softmax_loss_is_stable_for_huge_scores():
    loss, dx = layers.softmax_loss(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    assert loss == pytest.approx(500.0)


def test_svm_loss_by_hand():
    x = np.array([[3.0, 1.0, 2.5]])
    loss, _ = layers.svm_loss(x, np.array([0]))
    assert loss == pytest.approx(max(0, 1 - 3 + 1) + max(0, 2.5 - 3 + 1))


@pytest.mark.parametrize("smoothing", [0.1, 0.5])
def test_label_smoothed_softmax_gradients(rng, smoothing):
    x = rng.standard_normal((8, 5))
    y = rng.integers(5, size=8)
    _, dx = layers.softmax_loss(x, y, label_smoothing=smoothing)
    numerical = eval_numerical_gradient(lambda v: layers.softmax_loss(v, y, label_smoothing=smoothing)[0], x,
                                        verbose=False)
    assert rel_error(numerical, dx) < 1e-7


def test_label_smoothing_is_cross_entropy_against_the_smoothed_target(rng):
    x, y, s = rng.standard_normal((6, 4)), rng.integers(4, size=6), 0.2
    log_probs = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    target = np.full((6, 4), s / 4)
    target[np.arange(6), y] += 1 - s
    loss, dx = layers.softmax_loss(x, y, label_smoothing=s)
    assert loss == pytest.approx(-(target * log_probs).sum(axis=1).mean(), rel=1e-12)
    np.testing.assert_allclose(dx, (np.exp(log_probs) - target) / 6, atol=1e-15)
    x32 = x.astype(np.float32)
    assert layers.softmax_loss(x32, y, label_smoothing=s)[1].dtype == np.float32


@pytest.mark.parametrize("bad, error", [(-0.1, ValueError), (1.0, ValueError), ("0.1", TypeError), (True, TypeError)])
def test_label_smoothing_outside_zero_one_is_refused(bad, error):
    with pytest.raises(error, match="label_smoothing must"):
        layers.softmax_loss(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=bad)


GELU_PAIRS = [(layers.gelu_forward, layers.gelu_backward), (layers.gelu_forward_fast, layers.gelu_backward_fast)]


@pytest.mark.parametrize("forward, backward", GELU_PAIRS, ids=["reference", "fast"])
def test_gelu_gradients(rng, forward, backward):
    x = rng.uniform(-3, 3, (4, 3, 5))  # in the far tails the gradient (~1e-9) is below what differences resolve
    assert_layer_gradients(forward, backward, (x,), [0], rng, h=1e-5)


@pytest.mark.parametrize("forward, backward", GELU_PAIRS, ids=["reference", "fast"])
def test_gelu_is_x_times_the_normal_cdf(forward, backward):
    """Known values of x * Phi(x): 0, Phi(1), -Phi(-1), and the two tails (x, and -12 * Phi(-12) =
    -12 * 1.776482112077679e-33, which 1 + erf(x / sqrt 2) would have cancelled to 0)."""
    x = np.array([0.0, 1.0, -1.0, 2.0, 12.0, -12.0])
    out, _ = forward(x)
    np.testing.assert_allclose(out, [0.0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416, 12.0,
                                     -12 * 1.776482112077679e-33], rtol=1e-13, atol=1e-300)
    slope = backward(np.ones(1), forward(np.zeros(1))[1])
    assert slope.item() == pytest.approx(0.5)  # Phi(0) + 0 * phi(0)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def test_affine_rejects_mismatched_weight(rng):
    with pytest.raises(ValueError, match=r"w must have shape \(6, M\).*\(4, 3\)"):
        layers.affine_forward(rng.standard_normal((2, 6)), rng.standard_normal((4, 3)), np.zeros(3))


def test_affine_rejects_integer_input():
    with pytest.raises(TypeError, match=r"x must be a float32 or float64 array, got dtype int64 \(cast it"):
        layers.affine_forward(np.ones((2, 3), dtype=np.int64), np.ones((3, 2)), np.zeros(2))


def _int_params_cases():
    """(name, forward, x (N, ...) -> args with integer parameters) for every layer taking parameters."""
    from convnet import conv_layers

    def bn(x):
        return x, np.array([3, 4, 5]), np.array([6, 7, 8]), {"mode": "train"}

    return [
        ("affine", layers.affine_forward, lambda x: (x.reshape(2, -1), np.arange(18).reshape(6, 3) - 9,
                                                     np.array([0, 128, -1]))),
        ("batchnorm", layers.batchnorm_forward, lambda x: bn(x.reshape(4, 3))),
        ("layernorm", layers.layernorm_forward, lambda x: bn(x.reshape(4, 3))),
        ("conv", conv_layers.conv_forward, lambda x: (x.reshape(1, 3, 2, 2), np.ones((2, 3, 1, 1), dtype=int),
                                                      np.array([0, 128]), {"stride": 1, "pad": 0})),
        ("conv_naive", conv_layers.conv_forward_naive,
         lambda x: (x.reshape(1, 3, 2, 2), np.ones((2, 3, 1, 1), dtype=int), np.array([0, 128]),
                    {"stride": 1, "pad": 0})),
        ("spatial_batchnorm", conv_layers.spatial_batchnorm_forward, lambda x: bn(x.reshape(1, 3, 2, 2))),
        ("spatial_batchnorm_reference", conv_layers.spatial_batchnorm_forward_reference,
         lambda x: bn(x.reshape(1, 3, 2, 2))),
        ("spatial_groupnorm", conv_layers.spatial_groupnorm_forward,
         lambda x: (x.reshape(1, 3, 2, 2), np.array([3, 4, 5]), np.array([6, 7, 8]), 3, {})),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", _int_params_cases(), ids=lambda case: case[0])
def test_integer_parameters_are_cast_to_the_dtype_of_x(rng, case, dtype):
    """CS231n's notebooks pass gamma = np.array([3, 4, 5]) and b = np.array([0, 128]): such integer
    parameters compute exactly as their float values would, in x's dtype."""
    _, forward, arguments = case
    x = rng.standard_normal(12).astype(dtype)
    with_ints = arguments(x)
    with_floats = [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "i" else a for a in with_ints]
    out, _ = forward(*with_ints)
    expected, _ = forward(*with_floats)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


def test_batchnorm_rejects_bad_mode_and_gamma(rng):
    x = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"bn_param\['mode'\] must be 'train' or 'test', got 'eval'"):
        layers.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "eval"})
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\), got \(4,\)"):
        layers.batchnorm_forward(x, np.ones(4), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="bn_param is missing the key 'mode'"):
        layers.batchnorm_forward(x, np.ones(3), np.zeros(3), {})


def test_backward_rejects_dout_of_wrong_shape(rng):
    _, cache = layers.affine_forward(rng.standard_normal((2, 3)), rng.standard_normal((3, 4)), np.zeros(4))
    with pytest.raises(ValueError, match=r"dout must have shape \(2, 4\), got \(2, 5\)"):
        layers.affine_backward(np.zeros((2, 5)), cache)
    _, cache = layers.batchnorm_forward(rng.standard_normal((5, 3)), np.ones(3), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="dout must have shape"):
        layers.batchnorm_backward(np.zeros((5, 4)), cache)


def test_losses_reject_bad_labels(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match=r"labels in \[0, 4\)"):
        layers.softmax_loss(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        layers.svm_loss(x, np.array([0, 1]))
    with pytest.raises(TypeError, match="integer class labels"):
        layers.softmax_loss(x, np.array([0.0, 1.0, 2.0]))


def test_numerical_layer_gradients_detects_a_wrong_backward(rng):
    """The checker itself must fail on a wrong gradient (guards against a vacuous suite)."""
    x = rng.standard_normal((3, 4))
    with pytest.raises(AssertionError, match="relative errors"):
        assert_layer_gradients(layers.relu_forward, lambda dout, cache: 2 * layers.relu_backward(dout, cache),
                               [x], [0], rng)
