"""Models: initial loss, float64 gradient checks, overfitting 50 samples, state round trips."""

import numpy as np
import pytest
from gradients import assert_gradient_matches, richardson_gradient

from convnet import layer_utils
from convnet.models import ConvNet, FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet
from convnet.solver import Solver

def convnet_layers(width):
    """Every ConvNet block type on 8x8 inputs: conv+bn+relu, pooling, a residual block with
    a projection, a 1x1 convolution, global average pooling and a hidden affine layer."""
    return [
        {"type": "conv_bn_relu", "filters": width},
        {"type": "pool"},
        {"type": "residual", "filters": width + 1},
        {"type": "conv_relu", "filters": width, "size": 1},
        {"type": "pool"},
        "global_avgpool",
        {"type": "affine_relu", "units": 2 * width},
    ]


TINY_CONVNET = convnet_layers(3)


def tiny_models(dtype=np.float64, reg=0.0, width=1):
    """One instance of each model on 3x8x8 inputs and 5 classes; ``width`` scales the layers."""
    hidden = [9 * width, 7 * width]
    return {
        "TwoLayerNet": TwoLayerNet(input_dim=192, hidden_dim=10 * width, num_classes=5, weight_scale=0.1, reg=reg,
                                   dtype=dtype, seed=0),
        "FullyConnectedNet": FullyConnectedNet(hidden, input_dim=192, num_classes=5, weight_scale=0.1, reg=reg,
                                               dtype=dtype, seed=0),
        "FullyConnectedNet-batchnorm": FullyConnectedNet(hidden, input_dim=192, num_classes=5, weight_scale=0.1,
                                                         normalization="batchnorm", reg=reg, dtype=dtype, seed=0),
        "FullyConnectedNet-layernorm-dropout": FullyConnectedNet(
            hidden, input_dim=192, num_classes=5, weight_scale=0.1, normalization="layernorm",
            dropout_keep_ratio=0.9, reg=reg, dtype=dtype, seed=0),
        "ThreeLayerConvNet": ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=3 * width, filter_size=3,
                                               hidden_dim=7 * width, num_classes=5, weight_scale=0.1, reg=reg,
                                               dtype=dtype, seed=0),
        "ConvNet": ConvNet(convnet_layers(3 * width), input_dim=(3, 8, 8), num_classes=5, reg=reg, dtype=dtype,
                           seed=0),
    }


MODEL_NAMES = list(tiny_models())


def images(rng, n=6, dtype=np.float64):
    return rng.standard_normal((n, 3, 8, 8)).astype(dtype)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_initial_loss_is_log_classes_and_grows_with_reg(rng, name):
    X, y = images(rng, 40), rng.integers(5, size=40)
    plain = tiny_models(reg=0.0)[name]
    if name in ("TwoLayerNet", "FullyConnectedNet", "ThreeLayerConvNet"):
        # with weight_scale 0.1 the scores are not small yet; CS231n's 1e-3 init makes them so
        for key in plain.params:
            plain.params[key] *= 0.01
    loss, _ = plain.loss(X, y)
    assert abs(loss - np.log(5)) < 0.1
    regularised = tiny_models(reg=1.0)[name]
    assert regularised.loss(X, y)[0] > tiny_models(reg=0.0)[name].loss(X, y)[0] + 0.01


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_gradients_float64(rng, name):
    model = tiny_models(reg=0.3)[name]
    if "fc_out.W" in model.params:
        # ConvNet starts its classifier near zero, which makes every other gradient
        # tiny; scale it up so relative errors measure the gradient, not rounding.
        model.params["fc_out.W"] *= 100
    if hasattr(model, "dropout_param"):
        model.dropout_param["seed"] = 5  # the same mask on every call
    for value in model.params.values():
        # Zero biases would put a ReLU input exactly on its kink wherever the previous
        # layer's activations are all zero; centred differences are wrong there.
        value += 0.05 * rng.standard_normal(value.shape)
    X, y = images(rng, 4), rng.integers(5, size=4)
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for key, value in model.params.items():
        # Plain centred differences are either too rough (h=1e-4: O(h^2) error with batch
        # norm over 4 samples) or too noisy (h=1e-5: the loss's rounding error / h) for
        # 1e-6 on the smallest entries; the fourth-order estimate is neither. A small h also
        # keeps the steps from crossing a ReLU kink (one input here sits 1e-4 from zero).
        numerical, checked = richardson_gradient(lambda _: model.loss(X, y)[0], value, max_entries=40, rng=rng)
        assert grads[key].shape == value.shape
        assert_gradient_matches(numerical.reshape(-1)[checked], grads[key].reshape(-1)[checked], key)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_overfits_50_samples(rng, name):
    """Random images with random labels: only memorising them reaches 100%."""
    model = tiny_models(dtype=np.float32, width=5)[name]
    X, y = images(rng, 50, np.float32), rng.integers(5, size=50)
    # Validating on the training set itself: the Solver ends on the best-validating state.
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=25,
                    num_epochs=50, num_train_samples=None, verbose=False, seed=0)
    solver.train()
    assert solver.check_accuracy(X, y) == 1.0


@pytest.mark.parametrize("name", ["FullyConnectedNet-batchnorm", "ConvNet"])
def test_state_round_trip_keeps_running_statistics(rng, tmp_path, name):
    model = tiny_models(dtype=np.float32)[name]
    X = images(rng, 8, np.float32)
    for _ in range(3):
        model.loss(X, rng.integers(5, size=8))  # train mode: running statistics move
    path = tmp_path / "model.npz"
    model.save(path)
    fresh = tiny_models(dtype=np.float32)[name]
    assert not np.allclose(fresh.loss(X), model.loss(X))
    fresh.load(path)
    np.testing.assert_array_equal(fresh.loss(X), model.loss(X))
    for a, b in zip(fresh.bn_params, model.bn_params):
        np.testing.assert_array_equal(a["running_mean"], b["running_mean"])
        np.testing.assert_array_equal(a["running_var"], b["running_var"])


def test_load_state_rejects_another_architecture(rng):
    small = ConvNet(TINY_CONVNET, input_dim=(3, 8, 8), num_classes=5)
    other = ConvNet([{"type": "conv_relu", "filters": 2}, "global_avgpool"], input_dim=(3, 8, 8), num_classes=5)
    with pytest.raises(ValueError, match="state does not fit this model"):
        other.load_state(small.state())


def test_convnet_dtype_and_shapes(rng):
    model = ConvNet(TINY_CONVNET, input_dim=(3, 8, 8), num_classes=5)
    scores = model.loss(images(rng, 4, np.float32))
    assert scores.shape == (4, 5) and scores.dtype == np.float32
    assert all(value.dtype == np.float32 for value in model.params.values())
    assert "conv1.b" not in model.params  # conv_bn_relu: the batch norm cancels a bias
    assert "parameters" in model.describe()


@pytest.mark.parametrize(
    "layers, message",
    [
        ([{"type": "covn", "filters": 3}], r"'layers\[0\].type' must be one of .*got 'covn'; did you mean 'conv'"),
        ([{"type": "conv", "filter": 3}], r"'layers\[0\].filter' for conv: unknown; did you mean 'filters'"),
        ([{"type": "affine"}], r"'layers\[0\].units' is required for affine"),
        ([{"type": "conv", "filters": 0}], r"'layers\[0\].filters' must be >= 1, got 0"),
        ([{"type": "pool", "size": 3}], "does not tile"),
        (["global_avgpool", "pool"], r"needs \(C, H, W\) input"),
        ([], "non-empty list"),
    ],
)
def test_convnet_spec_errors_name_the_problem(layers, message):
    with pytest.raises(ValueError, match=message):
        ConvNet(layers, input_dim=(3, 8, 8))


def test_convnet_rejects_images_of_the_wrong_size(rng):
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3, 8, 8\)"):
        ConvNet(TINY_CONVNET, input_dim=(3, 8, 8)).loss(rng.standard_normal((2, 3, 9, 9)))


@pytest.mark.parametrize("build, message", [
    (lambda: FullyConnectedNet([5], normalization="batchnrom"),
     r"^FullyConnectedNet argument 'normalization' must be one of \[null, 'batchnorm', 'layernorm'\], "
     r"got 'batchnrom'; did you mean 'batchnorm'\?$"),
    (lambda: FullyConnectedNet([5], dropout_keep_ratio=0),
     r"^FullyConnectedNet argument 'dropout_keep_ratio' must be in \(0, 1\], got 0$"),
    (lambda: FullyConnectedNet(5), r"^FullyConnectedNet argument 'hidden_dims' must be a list of integers >= 1"),
    (lambda: FullyConnectedNet([5], reg="abc"), r"^FullyConnectedNet argument 'reg' must be a number >= 0"),
    (lambda: TwoLayerNet(hidden_dim=0), r"^TwoLayerNet argument 'hidden_dim' must be >= 1, got 0$"),
    (lambda: ThreeLayerConvNet(filter_size=4), r"^ThreeLayerConvNet argument 'filter_size' must be odd"),
    (lambda: ConvNet([{"type": "pool", "size": 3}], input_dim=(3, 8, 8)),
     r"^ConvNet argument 'layers\[0\]' \(pool\) does not fit its input \(3, 8, 8\)"),
    (lambda: ConvNet(TINY_CONVNET, input_dim=(3, 8)), r"^ConvNet argument 'input_dim' must be a list of 3 integers"),
])
def test_constructors_check_their_arguments_against_the_declared_options(build, message):
    """The rules a config's model section follows, with messages naming the argument (not a config key)."""
    with pytest.raises(ValueError, match=message):
        build()


def test_checked_arguments_keep_the_weights_bit_identical():
    """numpy integers and tuples are accepted and converted as a config's values are."""
    a = FullyConnectedNet([np.int64(5)], input_dim=np.int64(6), num_classes=3, weight_scale=1, seed=2)
    b = FullyConnectedNet((5,), input_dim=6, num_classes=3, weight_scale=1.0, seed=2)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in b.params)


@pytest.mark.parametrize(
    "forward, backward, extra",
    [
        (layer_utils.conv_relu_forward, layer_utils.conv_relu_backward, "conv"),
        (layer_utils.conv_bn_relu_forward, layer_utils.conv_bn_relu_backward, "conv_bn"),
        (layer_utils.conv_relu_pool_forward, layer_utils.conv_relu_pool_backward, "conv_pool"),
        (layer_utils.conv_bn_relu_pool_forward, layer_utils.conv_bn_relu_pool_backward, "conv_bn_pool"),
    ],
)
def test_conv_sandwich_gradients(rng, forward, backward, extra):
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    conv_param, bn_param = {"stride": 1, "pad": 1}, {"mode": "train"}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    args = {"conv": (x, w, b, conv_param), "conv_bn": (x, w, b, gamma, beta, conv_param, bn_param),
            "conv_pool": (x, w, b, conv_param, pool_param),
            "conv_bn_pool": (x, w, b, gamma, beta, conv_param, bn_param, pool_param)}[extra]
    out, cache = forward(*args)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    count = {"conv": 3, "conv_bn": 5, "conv_pool": 3, "conv_bn_pool": 5}[extra]  # x, w, b (, gamma, beta)
    assert len(grads) == count
    for position, value in enumerate(args[:count]):
        def f(v, position=position):
            trial = list(args)
            trial[position] = v
            return np.sum(forward(*trial)[0] * dout)

        assert_gradient_matches(richardson_gradient(f, value)[0], grads[position], f"argument {position}")


@pytest.mark.parametrize("kind", ["relu", "bn_relu", "ln_relu"])
def test_affine_sandwich_gradients(rng, kind):
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 6)), rng.standard_normal(6)
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    forward = getattr(layer_utils, f"affine_{kind}_forward")
    backward = getattr(layer_utils, f"affine_{kind}_backward")
    args = (x, w, b) if kind == "relu" else (x, w, b, gamma, beta, {"mode": "train"})
    out, cache = forward(*args)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    count = 3 if kind == "relu" else 5  # x, w, b (, gamma, beta)
    assert len(grads) == count
    for position in range(count):
        def f(v, position=position):
            trial = list(args)
            trial[position] = v
            return np.sum(forward(*trial)[0] * dout)

        assert_gradient_matches(richardson_gradient(f, args[position])[0], grads[position], f"argument {position}")


# ---------------------------------------------------------------------------
# CS231n conventions: float64 TwoLayerNet, np.random.seed, fixed dropout masks, old keywords
# ---------------------------------------------------------------------------


def _config_model(model):
    from convnet.config import validate_config
    from convnet.experiment import build_model

    return build_model(validate_config({"name": "t", "seed": 4, "model": model}))


def test_two_layer_net_defaults_to_float64_but_a_config_builds_float32():
    assert TwoLayerNet(input_dim=6, hidden_dim=4, num_classes=3).params["W1"].dtype == np.float64
    built = _config_model({"type": "TwoLayerNet", "hidden_dim": 4})
    assert all(value.dtype == np.float32 for value in built.params.values())


def _unseeded(name):
    return {
        "TwoLayerNet": lambda: TwoLayerNet(input_dim=12, hidden_dim=5, num_classes=3),
        "FullyConnectedNet": lambda: FullyConnectedNet([5, 4], input_dim=12, num_classes=3),
        "ThreeLayerConvNet": lambda: ThreeLayerConvNet(input_dim=(3, 4, 4), num_filters=2, filter_size=3,
                                                       hidden_dim=5, num_classes=3),
        "ConvNet": lambda: ConvNet([{"type": "conv_relu", "filters": 2}], input_dim=(3, 4, 4), num_classes=3),
    }[name]()


@pytest.mark.parametrize("name", ["TwoLayerNet", "FullyConnectedNet", "ThreeLayerConvNet", "ConvNet"])
def test_np_random_seed_fixes_the_weights_of_an_unseeded_model(name):
    np.random.seed(231)
    first = _unseeded(name).params
    np.random.seed(231)
    again = _unseeded(name).params
    np.random.seed(232)
    other = _unseeded(name).params
    for key, value in first.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)
    assert any(not np.array_equal(other[key], value) for key, value in first.items())


def _hidden_after_dropout(model, X):
    """What the first dropout layer passes on, for one training-mode forward."""
    from convnet.layers import dropout_forward

    model.set_mode("train")
    hidden = np.ones((len(X), 20), dtype=model.dtype)
    return dropout_forward(hidden, model.dropout_param)[0]


def test_a_seeded_fully_connected_net_uses_one_dropout_mask_per_seed(rng):
    """CS231n's gradient check: every forward of FullyConnectedNet(..., seed=123) drops the same units."""
    X, y = rng.standard_normal((4, 6)), rng.integers(3, size=4)
    model = FullyConnectedNet([20], input_dim=6, num_classes=3, dropout_keep_ratio=0.5, dtype=np.float64, seed=123)
    losses = {model.loss(X, y)[0] for _ in range(4)}
    assert len(losses) == 1
    assert np.array_equal(_hidden_after_dropout(model, X), _hidden_after_dropout(model, X))
    other = FullyConnectedNet([20], input_dim=6, num_classes=3, dropout_keep_ratio=0.5, dtype=np.float64, seed=124)
    assert not np.array_equal(_hidden_after_dropout(other, X), _hidden_after_dropout(model, X))


def test_training_from_a_config_draws_a_new_dropout_mask_each_step(rng):
    X, y = rng.standard_normal((4, 3 * 32 * 32)).astype(np.float32), rng.integers(10, size=4)
    model = _config_model({"type": "FullyConnectedNet", "hidden_dims": [20], "dropout_keep_ratio": 0.5})
    assert len({model.loss(X, y)[0] for _ in range(4)}) > 1
    unseeded = FullyConnectedNet([20], input_dim=6, num_classes=3, dropout_keep_ratio=0.5)
    X_small = X[:, :6]
    assert not np.array_equal(_hidden_after_dropout(unseeded, X_small), _hidden_after_dropout(unseeded, X_small))


def test_old_cs231n_keywords_are_aliases(rng):
    X, y = rng.standard_normal((4, 6)), rng.integers(3, size=4)
    new = FullyConnectedNet([5], input_dim=6, num_classes=3, dropout_keep_ratio=0.5, dtype=np.float64, seed=1)
    old = FullyConnectedNet([5], input_dim=6, num_classes=3, dropout=0.5, dtype=np.float64, seed=1)
    assert old.use_dropout and old.dropout_param["p"] == 0.5
    assert old.loss(X, y)[0] == new.loss(X, y)[0]
    batchnorm = FullyConnectedNet([5], input_dim=6, num_classes=3, use_batchnorm=True)
    assert batchnorm.normalization == "batchnorm" and "gamma1" in batchnorm.params and batchnorm.bn_params
    assert FullyConnectedNet([5], input_dim=6, num_classes=3, use_batchnorm=False).normalization is None
    with pytest.raises(TypeError, match="got both dropout= and dropout_keep_ratio="):
        FullyConnectedNet([5], dropout=0.5, dropout_keep_ratio=0.5)
    with pytest.raises(TypeError, match="got both use_batchnorm= and normalization="):
        FullyConnectedNet([5], use_batchnorm=True, normalization="layernorm")
    no_dropout = FullyConnectedNet([5], dropout=0)  # keep nothing makes no sense: 2016-2018's "no dropout"
    assert not no_dropout.use_dropout and no_dropout.dropout_param["p"] == 1.0 and not no_dropout.dropout_params


def test_old_keywords_stay_out_of_the_signature_and_the_config():
    import inspect

    from convnet.config import ConfigError, validate_config

    assert not {"dropout", "use_batchnorm"} & set(inspect.signature(FullyConnectedNet.__init__).parameters)
    with pytest.raises(ConfigError, match="model.dropout"):
        validate_config({"name": "t", "model": {"type": "FullyConnectedNet", "hidden_dims": [5], "dropout": 0.5}})


def test_recipe_convnet_gradients_float64(rng):
    """The fast recipe's pieces in one network, gradient-checked: a whitening layer (frozen filters,
    trained bias), conv -> pool (floor) -> bn (frozen scale) -> GELU, a dirac-initialised conv_bn_act
    with ReLU, a GELU stage, a head without bias with a fixed scale, label smoothing and reg."""
    layers = [{"type": "whiten", "size": 2, "images": 6},
              {"type": "conv_pool_bn_act", "filters": 4, "activation": "gelu", "scale": False, "floor": True},
              {"type": "conv_bn_act", "filters": 5, "init": "dirac", "momentum": 0.5},
              {"type": "conv_bn_act", "filters": 3, "activation": "gelu", "init": "uniform"}, "gelu",
              "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 9, 9), num_classes=5, reg=0.3, head_bias=False, head_scale=2.0,
                    label_smoothing=0.2, dtype=np.float64, seed=0)
    X, y = rng.standard_normal((6, 3, 9, 9)), rng.integers(5, size=6)
    model.initialize_from_data(X)
    model.params["fc_out.W"] *= 100
    for name, value in model.params.items():
        if name not in model.frozen:
            value += 0.05 * rng.standard_normal(value.shape)
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params) - {"whiten1.W", "bn1.gamma"}
    assert model.frozen == {"whiten1.W", "bn1.gamma"}
    for key, analytic in grads.items():
        numerical, checked = richardson_gradient(lambda _: model.loss(X, y)[0], model.params[key], max_entries=40,
                                                 rng=rng)
        assert analytic.shape == model.params[key].shape
        assert_gradient_matches(numerical.reshape(-1)[checked], analytic.reshape(-1)[checked], key)
