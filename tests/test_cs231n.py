"""CS231n assignment 2, the way a student runs it: the notebooks' check cells, through convnet.cs231n only.

Each test is one notebook check (FullyConnectedNets, BatchNormalization, Dropout,
ConvolutionalNetworks) with the notebook's inputs, written here with the expected values the
notebook text states; the imports are the notebook's with the prefix ``convnet.`` added.
"""

# ruff: noqa: F403, F405 - star imports, as the notebooks write them

import numpy as np
import pytest

from convnet.cs231n.classifiers.cnn import *
from convnet.cs231n.classifiers.fc_net import *
from convnet.cs231n.data_utils import get_CIFAR10_data, load_CIFAR10
from convnet.cs231n.fast_layers import conv_backward_fast, conv_forward_fast, max_pool_forward_fast
from convnet.cs231n.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array
from convnet.cs231n.layer_utils import conv_relu_pool_backward, conv_relu_pool_forward
from convnet.cs231n.layers import *
from convnet.cs231n.optim import adam, rmsprop, sgd_momentum
from convnet.cs231n.solver import Solver


def rel_error(x, y):
    """The notebooks' own helper."""
    return np.max(np.abs(x - y) / (np.maximum(1e-8, np.abs(x) + np.abs(y))))


def layer_gradient(forward, x, dout):
    return eval_numerical_gradient_array(lambda v: forward(v)[0], x, dout)


def model_gradient_errors(model, X, y, h=1e-5):
    """{name: relative error} of every parameter's analytic gradient against eval_numerical_gradient."""
    _, grads = model.loss(X, y)
    errors = {}
    for name in sorted(grads):
        f = lambda _: model.loss(X, y)[0]  # noqa: E731 - as the notebooks write it
        errors[name] = rel_error(eval_numerical_gradient(f, model.params[name], verbose=False, h=h), grads[name])
    assert set(errors) == set(model.params)
    return errors


# ---------------------------------------------------------------------------
# what the imports bring
# ---------------------------------------------------------------------------


def test_star_imports_bring_what_cs231ns_bring():
    namespace = {}
    exec("from convnet.cs231n.classifiers.fc_net import *", namespace)
    for name in ("affine_forward", "relu_backward", "batchnorm_forward", "layernorm_backward", "dropout_forward",
                 "svm_loss", "softmax_loss", "affine_relu_forward", "affine_relu_backward", "TwoLayerNet",
                 "FullyConnectedNet"):
        assert name in namespace, name
    namespace = {}
    exec("from convnet.cs231n.classifiers.cnn import *", namespace)
    for name in ("ThreeLayerConvNet", "conv_forward_fast", "conv_relu_pool_forward", "conv_forward_naive",
                 "spatial_batchnorm_forward", "softmax_loss"):
        assert name in namespace, name
    from convnet.cs231n.classifiers import FullyConnectedNet as fcn, ThreeLayerConvNet as cnn, TwoLayerNet as two
    from convnet.models import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet

    assert (fcn, cnn, two) == (FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet)  # re-exports, not copies


# ---------------------------------------------------------------------------
# FullyConnectedNets.ipynb
# ---------------------------------------------------------------------------


def test_affine_forward_cell():
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size, weight_size = num_inputs * np.prod(input_shape), output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = affine_forward(x, w, b)
    correct_out = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    assert rel_error(out, correct_out) < 1e-8


def test_relu_forward_cell():
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = relu_forward(x)
    correct_out = np.array([[0., 0., 0., 0.], [0., 0., 0.04545455, 0.13636364],
                            [0.22727273, 0.31818182, 0.40909091, 0.5]])
    assert rel_error(out, correct_out) < 1e-7


def test_affine_and_relu_backward_cells():
    np.random.seed(231)
    x, w, b = np.random.randn(10, 2, 3), np.random.randn(6, 5), np.random.randn(5)
    dout = np.random.randn(10, 5)
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: affine_forward(v, w, b), x, dout)) < 1e-8
    assert rel_error(dw, layer_gradient(lambda v: affine_forward(x, v, b), w, dout)) < 1e-8
    assert rel_error(db, layer_gradient(lambda v: affine_forward(x, w, v), b, dout)) < 1e-8
    x, dout = np.random.randn(10, 10), np.random.randn(10, 10)
    _, cache = relu_forward(x)
    assert rel_error(relu_backward(dout, cache), layer_gradient(relu_forward, x, dout)) < 1e-8
    x, w, b = np.random.randn(2, 3, 4), np.random.randn(12, 10), np.random.randn(10)
    dout = np.random.randn(2, 10)
    _, cache = affine_relu_forward(x, w, b)
    dx, dw, db = affine_relu_backward(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: affine_relu_forward(v, w, b), x, dout)) < 1e-8


def test_loss_layers_cell():
    np.random.seed(231)
    num_classes, num_inputs = 10, 50
    x = 0.001 * np.random.randn(num_inputs, num_classes)
    y = np.random.randint(num_classes, size=num_inputs)
    for loss_fn, expected in ((svm_loss, 9.0), (softmax_loss, 2.3)):
        loss, dx = loss_fn(x, y)
        dx_num = eval_numerical_gradient(lambda v: loss_fn(v, y)[0], x, verbose=False)
        assert abs(loss - expected) < 0.05  # "should be around 9" / "around 2.3"
        assert rel_error(dx_num, dx) < 1e-7


def test_two_layer_net_cell():
    """The notebook's 1e-6 check on the scores and 1e-10 checks on the losses (float64, as in CS231n)."""
    np.random.seed(231)
    N, D, H, C = 3, 5, 50, 7
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=N)
    std = 1e-3
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std)
    assert abs(model.params["W1"].std() - std) < std / 10 and np.all(model.params["b1"] == 0)
    assert abs(model.params["W2"].std() - std) < std / 10 and np.all(model.params["b2"] == 0)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    scores = model.loss(X)
    correct_scores = np.asarray(
        [[11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
         [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
         [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319]])
    assert np.abs(scores - correct_scores).sum() < 1e-6
    y = np.asarray([0, 5, 1])
    loss, _ = model.loss(X, y)
    assert abs(loss - 3.4702243556) < 1e-10
    model.reg = 1.0
    loss, _ = model.loss(X, y)
    assert abs(loss - 26.5948426952) < 1e-10
    for reg in (0.0, 0.7):
        model.reg = reg
        assert max(model_gradient_errors(model, X, y).values()) < 1e-6  # "around e-7 or less"


def _fc_check_data():
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    return np.random.randn(N, D), np.random.randint(C, size=(N,)), (D, H1, H2, C)


@pytest.mark.parametrize("reg", [0, 3.14])
def test_fully_connected_net_initial_loss_and_gradient_cell(reg):
    X, y, (D, H1, H2, C) = _fc_check_data()
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg, weight_scale=5e-2,
                              dtype=np.float64)
    loss, _ = model.loss(X, y)
    if reg == 0:
        assert abs(loss - np.log(C)) < 0.1  # an untrained net is near chance
    errors = model_gradient_errors(model, X, y)
    # "Most of the errors should be on the order of e-7 or smaller ... fine to see W2 on the order of e-5"
    assert max(errors.values()) < 1e-4
    assert np.median(list(errors.values())) < 1e-6


def test_solver_overfits_fifty_images_cell(rng):
    """The notebook trains a three-layer net on 50 images to 100% training accuracy within 20 epochs."""
    np.random.seed(231)
    X = rng.standard_normal((50, 3, 8, 8))
    y = rng.integers(10, size=50)
    small_data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    model = FullyConnectedNet([100, 100], input_dim=3 * 8 * 8, weight_scale=1e-1, dtype=np.float64)
    solver = Solver(model, small_data, print_every=10, num_epochs=20, batch_size=25, update_rule="sgd",
                    optim_config={"learning_rate": 1e-1}, verbose=False)
    solver.train()
    assert solver.check_accuracy(X, y) == 1.0


def test_update_rule_cells():
    """sgd_momentum, rmsprop and adam against the notebook's expected next_w and state."""
    N, D = 4, 5

    def w_and_dw():  # each notebook cell builds its own w
        return np.linspace(-0.4, 0.6, num=N * D).reshape(N, D), np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)

    w, dw = w_and_dw()
    v = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    next_w, config = sgd_momentum(w, dw, config={"learning_rate": 1e-3, "velocity": v})
    expected_next_w = np.asarray([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]])
    expected_velocity = np.asarray([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]])
    assert rel_error(next_w, expected_next_w) < 1e-8
    assert rel_error(config["velocity"], expected_velocity) < 1e-8

    w, dw = w_and_dw()
    cache = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    next_w, config = rmsprop(w, dw, config={"learning_rate": 1e-2, "cache": cache})
    expected_next_w = np.asarray([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]])
    expected_cache = np.asarray([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]])
    assert rel_error(next_w, expected_next_w) < 1e-7
    assert rel_error(config["cache"], expected_cache) < 1e-7

    w, dw = w_and_dw()
    m = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    v = np.linspace(0.7, 0.5, num=N * D).reshape(N, D)
    next_w, config = adam(w, dw, config={"learning_rate": 1e-2, "m": m, "v": v, "t": 5})
    expected_next_w = np.asarray([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]])
    expected_v = np.asarray([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]])
    expected_m = np.asarray([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]])
    assert rel_error(next_w, expected_next_w) < 1e-6
    assert rel_error(config["v"], expected_v) < 1e-6
    assert rel_error(config["m"], expected_m) < 1e-6


def test_np_random_seed_makes_a_notebook_reproducible():
    """Re-running a cell after np.random.seed(231) prints the same initial loss."""
    losses = []
    for _ in range(2):
        X, y, (D, H1, H2, C) = _fc_check_data()
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2,
                                  dtype=np.float64)
        losses.append(model.loss(X, y)[0])
    assert losses[0] == losses[1]


# ---------------------------------------------------------------------------
# BatchNormalization.ipynb
# ---------------------------------------------------------------------------


def _two_layer_activations(N=200, D1=50, D2=60, D3=3):
    np.random.seed(231)
    X = np.random.randn(N, D1)
    W1, W2 = np.random.randn(D1, D2), np.random.randn(D2, D3)
    return np.maximum(0, X.dot(W1)).dot(W2)


def test_batchnorm_forward_train_cell():
    a = _two_layer_activations()
    a_norm, _ = batchnorm_forward(a, np.ones(3), np.zeros(3), {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=0), 0, atol=1e-7)
    np.testing.assert_allclose(a_norm.std(axis=0), 1, atol=1e-5)
    gamma, beta = np.asarray([1.0, 2.0, 3.0]), np.asarray([11.0, 12.0, 13.0])
    a_norm, _ = batchnorm_forward(a, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=0), beta, atol=1e-6)
    np.testing.assert_allclose(a_norm.std(axis=0), gamma, atol=1e-4)


def test_batchnorm_forward_test_cell():
    np.random.seed(231)
    N, D1, D2, D3 = 200, 50, 60, 3
    W1, W2 = np.random.randn(D1, D2), np.random.randn(D2, D3)
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(D3), np.zeros(D3)
    for _ in range(50):
        X = np.random.randn(N, D1)
        batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), gamma, beta, bn_param)
    bn_param["mode"] = "test"
    X = np.random.randn(N, D1)
    a_norm, _ = batchnorm_forward(np.maximum(0, X.dot(W1)).dot(W2), gamma, beta, bn_param)
    np.testing.assert_allclose(a_norm.mean(axis=0), 0, atol=0.15)  # "means should be close to zero"
    np.testing.assert_allclose(a_norm.std(axis=0), 1, atol=0.15)


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
def test_norm_backward_cell(norm):
    forward = {"batchnorm": batchnorm_forward, "layernorm": layernorm_forward}[norm]
    backward = {"batchnorm": batchnorm_backward, "layernorm": layernorm_backward}[norm]
    np.random.seed(231)
    N, D = 4, 5
    x = 5 * np.random.randn(N, D) + 12
    gamma, beta, dout = np.random.randn(D), np.random.randn(D), np.random.randn(N, D)
    param = {"mode": "train"}
    _, cache = forward(x, gamma, beta, param)
    dx, dgamma, dbeta = backward(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: forward(v, gamma, beta, param), x, dout)) < 1e-8
    assert rel_error(dgamma, layer_gradient(lambda v: forward(x, v, beta, param), gamma, dout)) < 1e-8
    assert rel_error(dbeta, layer_gradient(lambda v: forward(x, gamma, v, param), beta, dout)) < 1e-8


def test_batchnorm_backward_alt_cell():
    np.random.seed(231)
    N, D = 100, 500
    x = 5 * np.random.randn(N, D) + 12
    gamma, beta, dout = np.random.randn(D), np.random.randn(D), np.random.randn(N, D)
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})
    for got, want in zip(batchnorm_backward_alt(dout, cache), batchnorm_backward(dout, cache)):
        assert rel_error(got, want) < 1e-12


def test_layernorm_forward_cell():
    a = _two_layer_activations(N=4)
    a_norm, _ = layernorm_forward(a, np.ones(3), np.zeros(3), {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=1), 0, atol=1e-7)
    np.testing.assert_allclose(a_norm.std(axis=1), 1, atol=1e-4)
    a_norm, _ = layernorm_forward(a, np.asarray([3.0, 3.0, 3.0]), np.asarray([5.0, 5.0, 5.0]),
                                  {"mode": "train"})
    np.testing.assert_allclose(a_norm.mean(axis=1), 5, atol=1e-6)
    np.testing.assert_allclose(a_norm.std(axis=1), 3, atol=1e-3)


def assert_normalized_net_gradients(model, X, y):
    """The notebook expects 1e-4~1e-10 for W, 1e-8~1e-10 for b, 1e-8~1e-9 for beta and gamma. Batch norm
    cancels the hidden layers' biases: their gradient is exactly 0 and the numerical one is rounding
    (relative error ~1e-3 of nothing), so those are checked to be zero instead."""
    errors = model_gradient_errors(model, X, y)
    _, grads = model.loss(X, y)
    cancelled = [f"b{i}" for i in range(1, model.num_layers)] if model.normalization == "batchnorm" else []
    for name in cancelled:
        assert np.abs(grads[name]).max() < 1e-12, name
    assert max(error for name, error in errors.items() if name not in cancelled) < 1e-3


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("reg", [0, 3.14])
def test_fully_connected_net_with_normalization_gradient_cell(normalization, reg):
    X, y, (D, H1, H2, C) = _fc_check_data()
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg, weight_scale=5e-2,
                              dtype=np.float64, normalization=normalization)
    assert_normalized_net_gradients(model, X, y)


def test_use_batchnorm_keyword_of_2016_cell():
    X, y, (D, H1, H2, C) = _fc_check_data()
    old = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2, dtype=np.float64,
                            use_batchnorm=True, seed=0)
    new = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2, dtype=np.float64,
                            normalization="batchnorm", seed=0)
    assert sorted(old.params) == sorted(new.params) and "gamma1" in old.params
    assert old.loss(X, y)[0] == new.loss(X, y)[0]


# ---------------------------------------------------------------------------
# Dropout.ipynb
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.25, 0.4, 0.7])
def test_dropout_forward_cell(p):
    np.random.seed(231)
    x = np.random.randn(500, 500) + 10
    out, _ = dropout_forward(x, {"mode": "train", "p": p})
    out_test, _ = dropout_forward(x, {"mode": "test", "p": p})
    assert abs(out.mean() - x.mean()) < 0.2  # "the mean of the output should be close to that of the input"
    assert out_test.mean() == x.mean()
    assert abs((out == 0).mean() - (1 - p)) < 0.01
    assert (out_test == 0).mean() == 0


def test_np_random_seed_fixes_an_unseeded_dropout_mask():
    """Without a seed in dropout_param, the mask follows np.random's state, as in CS231n."""
    x = np.ones((20, 30))
    masks = []
    for _ in range(2):
        np.random.seed(231)
        masks.append(dropout_forward(x, {"mode": "train", "p": 0.5})[0])
    assert np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[1], dropout_forward(x, {"mode": "train", "p": 0.5})[0])


def test_dropout_backward_cell():
    np.random.seed(231)
    x = np.random.randn(10, 10) + 10
    dout = np.random.randn(*x.shape)
    dropout_param = {"mode": "train", "p": 0.2, "seed": 123}
    _, cache = dropout_forward(x, dropout_param)
    dx = dropout_backward(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: dropout_forward(v, dropout_param), x, dout)) < 1e-10


@pytest.mark.parametrize("keep, keyword", [(1, "dropout_keep_ratio"), (0.75, "dropout_keep_ratio"),
                                           (0.5, "dropout_keep_ratio"), (0.5, "dropout")])  # dropout=: 2019-2020
def test_fully_connected_net_with_dropout_gradient_cell(keep, keyword):
    """The seed fixes the mask, so every forward of the numerical gradient drops the same units."""
    X, y, (D, H1, H2, C) = _fc_check_data()
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, weight_scale=5e-2,
                              dtype=np.float64, seed=123, **{keyword: keep})
    loss, _ = model.loss(X, y)
    assert abs(loss - np.log(C)) < 0.2
    # "Relative errors should be around e-6 or less"; W2 on the order of e-5 is fine
    assert max(model_gradient_errors(model, X, y).values()) < 1e-4


def test_the_2016_2018_dropout_zero_means_no_dropout():
    """The 2016-2018 Dropout notebook loops over dropout=0 (no dropout), 0.25, 0.5 in its gradient check
    and trains a dropout=0 baseline; 0 must build a model, the same one dropout_keep_ratio=1 builds."""
    X, y, (D, H1, H2, C) = _fc_check_data()
    common = dict(input_dim=D, num_classes=C, weight_scale=5e-2, dtype=np.float64, seed=123)
    baseline = FullyConnectedNet([H1, H2], dropout=0, **common)
    assert baseline.loss(X, y)[0] == FullyConnectedNet([H1, H2], dropout_keep_ratio=1, **common).loss(X, y)[0]
    assert max(model_gradient_errors(baseline, X, y).values()) < 1e-4


# ---------------------------------------------------------------------------
# ConvolutionalNetworks.ipynb
# ---------------------------------------------------------------------------


def test_conv_forward_naive_cell():
    x_shape, w_shape = (2, 3, 4, 4), (3, 3, 4, 4)
    x = np.linspace(-0.1, 0.5, num=np.prod(x_shape)).reshape(x_shape)
    w = np.linspace(-0.2, 0.3, num=np.prod(w_shape)).reshape(w_shape)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    correct_out = np.array([[[[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                             [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                             [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]],
                            [[[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                             [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                             [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]]])
    assert rel_error(out, correct_out) < 1e-7


def test_image_processing_via_convolutions_cell():
    """The notebook's grayscale + edge filters with an integer bias b = np.array([0, 128])."""
    rng = np.random.default_rng(0)
    x = np.zeros((2, 3, 20, 20))
    x[0] = rng.integers(0, 256, size=(3, 20, 20))
    x[1] = rng.integers(0, 256, size=(3, 20, 20))
    w = np.zeros((2, 3, 3, 3))
    w[0, 0, :, :] = [[0, 0, 0], [0, 0.3, 0], [0, 0, 0]]
    w[0, 1, :, :] = [[0, 0, 0], [0, 0.6, 0], [0, 0, 0]]
    w[0, 2, :, :] = [[0, 0, 0], [0, 0.1, 0], [0, 0, 0]]
    w[1, 2, :, :] = [[0, 0, 0], [-1, 2, -1], [0, 0, 0]]
    b = np.array([0, 128])
    out, _ = conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})
    gray = 0.3 * x[:, 0] + 0.6 * x[:, 1] + 0.1 * x[:, 2]
    np.testing.assert_allclose(out[:, 0], gray)
    blue = np.pad(x[:, 2], ((0, 0), (0, 0), (1, 1)))
    np.testing.assert_allclose(out[:, 1], 128 + 2 * blue[:, :, 1:-1] - blue[:, :, :-2] - blue[:, :, 2:])
    fast, _ = conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    np.testing.assert_allclose(fast, out)


def test_conv_backward_naive_cell():
    np.random.seed(231)
    x, w, b = np.random.randn(4, 3, 5, 5), np.random.randn(2, 3, 3, 3), np.random.randn(2)
    dout = np.random.randn(4, 2, 5, 5)
    conv_param = {"stride": 1, "pad": 1}
    _, cache = conv_forward_naive(x, w, b, conv_param)
    dx, dw, db = conv_backward_naive(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: conv_forward_naive(v, w, b, conv_param), x, dout)) < 1e-8
    assert rel_error(dw, layer_gradient(lambda v: conv_forward_naive(x, v, b, conv_param), w, dout)) < 1e-8
    assert rel_error(db, layer_gradient(lambda v: conv_forward_naive(x, w, v, conv_param), b, dout)) < 1e-8


def test_max_pool_naive_cells():
    x_shape = (2, 3, 4, 4)
    x = np.linspace(-0.3, 0.4, num=np.prod(x_shape)).reshape(x_shape)
    pool_param = {"pool_width": 2, "pool_height": 2, "stride": 2}
    out, _ = max_pool_forward_naive(x, pool_param)
    correct_out = np.array([[[[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                             [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                             [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]],
                            [[[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                             [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                             [[0.32631579, 0.34105263], [0.38526316, 0.4]]]])
    assert rel_error(out, correct_out) < 1e-7
    np.random.seed(231)
    x, dout = np.random.randn(3, 2, 8, 8), np.random.randn(3, 2, 4, 4)
    _, cache = max_pool_forward_naive(x, pool_param)
    dx = max_pool_backward_naive(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: max_pool_forward_naive(v, pool_param), x, dout)) < 1e-8


def test_fast_layers_match_naive_cell():
    np.random.seed(231)
    x, w, b = np.random.randn(10, 3, 31, 31), np.random.randn(25, 3, 3, 3), np.random.randn(25)
    conv_param = {"stride": 2, "pad": 1}
    out_naive, cache_naive = conv_forward_naive(x, w, b, conv_param)
    out_fast, cache_fast = conv_forward_fast(x, w, b, conv_param)
    dout = np.random.randn(*out_naive.shape)
    assert rel_error(out_naive, out_fast) < 1e-9
    for naive, fast in zip(conv_backward_naive(dout, cache_naive), conv_backward_fast(dout, cache_fast)):
        assert rel_error(naive, fast) < 1e-9
    x = np.random.randn(10, 3, 32, 32)
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    assert rel_error(max_pool_forward_naive(x, pool_param)[0], max_pool_forward_fast(x, pool_param)[0]) < 1e-12


def test_conv_relu_pool_sandwich_cell():
    np.random.seed(231)
    x, w, b = np.random.randn(2, 3, 16, 16), np.random.randn(3, 3, 3, 3), np.random.randn(3)
    dout = np.random.randn(2, 3, 8, 8)
    conv_param, pool_param = {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    _, cache = conv_relu_pool_forward(x, w, b, conv_param, pool_param)
    dx, dw, db = conv_relu_pool_backward(dout, cache)
    for got, position in ((dx, 0), (dw, 1), (db, 2)):
        def forward(v, position=position):
            args = [x, w, b]
            args[position] = v
            return conv_relu_pool_forward(*args, conv_param, pool_param)

        assert rel_error(got, layer_gradient(forward, [x, w, b][position], dout)) < 1e-6


def test_three_layer_conv_net_loss_cell():
    np.random.seed(231)
    model = ThreeLayerConvNet()
    N = 50
    X, y = np.random.randn(N, 3, 32, 32), np.random.randint(10, size=N)
    loss, _ = model.loss(X, y)
    assert abs(loss - np.log(10)) < 0.01  # "Initial loss (no regularization)" ~ log(10)
    model.reg = 0.5
    assert model.loss(X, y)[0] > loss  # "Initial loss (with regularization)" goes up


def test_three_layer_conv_net_gradient_cell():
    np.random.seed(231)
    input_dim = (3, 16, 16)
    X, y = np.random.randn(2, *input_dim), np.random.randint(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=input_dim, hidden_dim=7,
                              dtype=np.float64)
    errors = model_gradient_errors(model, X, y, h=1e-6)
    assert max(errors.values()) < 5e-2  # the notebook prints up to ~2e-2 (W2): tiny weights, h = 1e-6


def test_spatial_batchnorm_forward_cell_with_integer_gamma():
    np.random.seed(231)
    N, C, H, W = 2, 3, 4, 5
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_batchnorm_forward(x, np.ones(C), np.zeros(C), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-7)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    gamma, beta = np.asarray([3, 4, 5]), np.asarray([6, 7, 8])  # integers, as the notebook writes them
    out, _ = spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), beta, atol=1e-6)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), gamma, atol=1e-3)


@pytest.mark.parametrize("norm", ["batchnorm", "groupnorm"])
def test_spatial_norm_backward_cells(norm):
    np.random.seed(231)
    N, C, H, W, G = 2, 6, 4, 5, 2
    x = 5 * np.random.randn(N, C, H, W) + 12
    if norm == "batchnorm":
        gamma, beta = np.random.randn(C), np.random.randn(C)
        param = {"mode": "train"}

        def forward(v, g, b_):
            return spatial_batchnorm_forward(v, g, b_, param)

        backward = spatial_batchnorm_backward
    else:
        gamma, beta = np.random.randn(1, C, 1, 1), np.random.randn(1, C, 1, 1)

        def forward(v, g, b_):
            return spatial_groupnorm_forward(v, g, b_, G, {})

        backward = spatial_groupnorm_backward
    dout = np.random.randn(N, C, H, W)
    _, cache = forward(x, gamma, beta)
    dx, dgamma, dbeta = backward(dout, cache)
    assert rel_error(dx, layer_gradient(lambda v: forward(v, gamma, beta), x, dout)) < 1e-6
    assert rel_error(dgamma, layer_gradient(lambda v: forward(x, v, beta), gamma, dout)) < 1e-6
    assert rel_error(dbeta, layer_gradient(lambda v: forward(x, gamma, v), beta, dout)) < 1e-6


def test_spatial_groupnorm_forward_cell():
    np.random.seed(231)
    N, C, H, W, G = 2, 6, 4, 5, 2
    x = 4 * np.random.randn(N, C, H, W) + 10
    out, _ = spatial_groupnorm_forward(x, np.ones((1, C, 1, 1)), np.zeros((1, C, 1, 1)), G,
                                       {"mode": "train"})
    groups = out.reshape(N * G, -1)
    np.testing.assert_allclose(groups.mean(axis=1), 0, atol=1e-7)
    np.testing.assert_allclose(groups.std(axis=1), 1, atol=1e-4)


# ---------------------------------------------------------------------------
# data_utils
# ---------------------------------------------------------------------------


def test_data_utils_point_at_convnet_data(tmp_path, monkeypatch):
    """Without the files, get_CIFAR10_data says where it looked and how to download; the loaders are convnet's."""
    from convnet import data

    assert (get_CIFAR10_data, load_CIFAR10) == (data.splits.get_CIFAR10_data, data.cifar10.load_CIFAR10)
    monkeypatch.setenv("CONVNET_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"CONVNET_DATA.*|python -m convnet.data download"):
        get_CIFAR10_data()
