"""The ConvNet block registry: one entry per block type, read by ConvNet, config validation,
the docs table and the benchmark's PyTorch twin."""

import sys
from pathlib import Path

import numpy as np
import pytest

from convnet import config_tables
from convnet.config import validate_config
from convnet.models import ConvNet, blocks
from convnet.models.blocks import BLOCKS, BlockType
from convnet.options import REQUIRED, Option

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bench_train  # noqa: E402  (benchmarks/ is not a package)
import torch_twin  # noqa: E402

# Smallest values for the required options, so that every type can be built.
REQUIRED_VALUES = {"filters": 3, "units": 5}
EVERY_TYPE = [
    {"type": "whiten", "size": 1, "images": 4}, {"type": "conv", "filters": 4, "init": "dirac"},
    {"type": "conv_relu", "filters": 4, "size": 1, "init": "uniform"}, "batchnorm", "relu", "gelu",
    {"type": "conv_bn_act", "filters": 4, "activation": "gelu", "scale": False, "momentum": 0.5},
    {"type": "conv_pool_bn_act", "filters": 6, "pool": 2},
    {"type": "conv_bn_relu", "filters": 6, "stride": 2, "size": 2, "pad": 0}, {"type": "residual", "filters": 5},
    {"type": "residual", "filters": 5}, {"type": "pool", "size": 2}, "global_avgpool", {"type": "dropout", "keep": 0.9},
    {"type": "affine", "units": 7}, {"type": "batchnorm", "momentum": 0.5}, {"type": "affine_relu", "units": 5},
]


def minimal_entry(kind):
    options = {key: REQUIRED_VALUES[key] for key, o in BLOCKS[kind].options.items() if o.default is REQUIRED}
    return {"type": kind, **options}


def test_every_block_type_is_covered_here():
    assert {entry if isinstance(entry, str) else entry["type"] for entry in EVERY_TYPE} == set(BLOCKS)


@pytest.mark.parametrize("kind", list(BLOCKS))
def test_every_block_type_builds_with_its_declared_shape(kind, rng):
    """ConvNet builds each type from its registry entry; the built shape is the one validation infers."""
    layers = [minimal_entry(kind)] if BLOCKS[kind].images else ["global_avgpool", minimal_entry(kind)]
    model = ConvNet(layers, input_dim=(3, 8, 8), num_classes=4, seed=0)
    _, shapes = blocks.resolve_layers(layers, (3, 8, 8))
    assert model.network.blocks[-2].out_shape == shapes[-1]
    loss, grads = model.loss(rng.standard_normal((2, 3, 8, 8)), np.array([0, 3]))
    assert np.isfinite(loss) and set(grads) == set(model.params) - model.frozen


def test_parameter_names_and_order_are_those_of_the_block_list():
    model = ConvNet(EVERY_TYPE, input_dim=(3, 8, 8), num_classes=3, seed=1)
    assert list(model.params) == [
        "whiten1.W", "whiten1.b", "conv1.W", "conv1.b", "conv2.W", "conv2.b", "bn1.gamma", "bn1.beta",
        "conv3.W", "bn2.gamma", "bn2.beta", "conv4.W", "bn3.gamma", "bn3.beta", "conv5.W", "bn4.gamma", "bn4.beta",
        "res1.conv1.W", "res1.bn1.gamma", "res1.bn1.beta", "res1.conv2.W", "res1.bn2.gamma", "res1.bn2.beta",
        "res1.proj.W", "res1.proj_bn.gamma", "res1.proj_bn.beta",
        "res2.conv1.W", "res2.bn1.gamma", "res2.bn1.beta", "res2.conv2.W", "res2.bn2.gamma", "res2.bn2.beta",
        "fc1.W", "fc1.b", "bn5.gamma", "bn5.beta", "fc2.W", "fc2.b", "fc_out.W", "fc_out.b",
    ]
    assert model.params["whiten1.W"].shape == (6, 3, 1, 1) and model.params["conv4.W"].shape == (6, 4, 3, 3)
    assert model.params["conv5.W"].shape == (6, 6, 2, 2) and model.params["fc1.W"].shape == (5, 7)
    again = ConvNet(EVERY_TYPE, input_dim=(3, 8, 8), num_classes=3, seed=1)
    assert all(np.array_equal(model.params[name], again.params[name]) for name in model.params)


@pytest.mark.parametrize(
    "layers, message",
    [([{"type": "dropout", "keep": 0}], r"'layers\[0\].keep' must be in \(0, 1\]"),
     ([{"type": "conv", "filters": 4, "stride": 0}], r"'layers\[0\].stride' must be >= 1"),
     ([{"type": "pool", "size": 3}], r"'layers\[0\]' \(pool\) does not fit its input \(3, 8, 8\)"),
     ([{"type": "batchnorm", "momentum": "fast"}], r"'layers\[0\].momentum' must be a number in \[0, 1\]")],
)
def test_bad_block_options_are_refused_from_python_too(layers, message):
    with pytest.raises(ValueError, match=message):
        ConvNet(layers, input_dim=(3, 8, 8))


class Scale(blocks.Block):
    """A new kind of stage for the extension test: y = factor * x."""

    def __init__(self, in_shape, factor):
        super().__init__(in_shape)
        self.factor = factor

    def forward(self, params, x):
        return self.factor * x, None

    def backward(self, params, dout, cache, grads, need_dx=True):
        return self.factor * dout


def test_a_new_block_type_is_one_registry_entry(monkeypatch, rng):
    """One BLOCKS entry makes a type buildable, validated, documented, and (made of known stages) twinned."""
    factor = {"factor": Option(1.0, float, range="(0, inf)", help="the multiplier")}
    monkeypatch.setitem(BLOCKS, "scale", BlockType(
        factor, blocks._same, lambda model, name, in_shape, factor: [Scale(in_shape, factor)], False, "y = factor x"))
    monkeypatch.setitem(BLOCKS, "conv_pool", BlockType(
        {"filters": blocks.FILTERS},
        lambda in_shape, filters: blocks.pool_shape(blocks.conv_shape(in_shape, filters, 3, 1, None), 2, None),
        lambda model, name, in_shape, filters: [blocks.Conv(model, name("conv"), in_shape, filters, 3, 1, None),
                                                blocks.MaxPool(name("pool"), (filters, *in_shape[1:]), 2, None)],
        True, "convolution, then 2x2 max pooling"))
    layers = [{"type": "conv_pool", "filters": 4}, {"type": "scale", "factor": 2}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 8, 8), num_classes=2, seed=0)
    assert model.network.blocks[1].out_shape == (4, 4, 4)
    model.loss(rng.standard_normal((2, 3, 8, 8)), np.array([0, 1]))
    raw = {"name": "t", "model": {"type": "ConvNet", "layers": layers}}
    assert validate_config(raw)["model"]["layers"][1] == {"type": "scale", "factor": 2}
    raw["model"]["layers"][1]["factor"] = 0
    with pytest.raises(ValueError, match=r"'model.layers\[1\].factor' must be > 0"):
        validate_config(raw)
    table = config_tables.blocks_table()
    assert "| `scale` | `factor: 1.0` (a number > 0; the multiplier) | y = factor x |" in table
    conv_pool_twin = ConvNet([layers[0], "global_avgpool"], input_dim=(3, 8, 8), num_classes=2, seed=0)
    assert [name for name, _ in torch_twin.twin_layers(conv_pool_twin.network, conv_pool_twin.params)] == [
        "Conv2d", "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Flatten", "Linear"]
    with pytest.raises(ValueError, match="no PyTorch twin for convnet stage Scale"):
        torch_twin.twin_layers(model.network, model.params)


def twin_parameter_count(layers):
    count = 0
    for name, args in layers:
        if name == "Residual":
            count += twin_parameter_count(args["body"]) + twin_parameter_count(args["shortcut"])
        elif name == "Conv2d":
            count += args["out_channels"] * args["in_channels"] * args["kernel_size"] ** 2
            count += args["out_channels"] if args["bias"] else 0
        elif name.startswith("BatchNorm"):
            count += 2 * args["num_features"]
        elif name == "Linear":
            count += (args["in_features"] + 1) * args["out_features"]
    return count


def test_the_benchmark_twin_follows_the_built_network():
    """The twin of a net with every block type holds every parameter, in convnet's layout."""
    model = ConvNet(EVERY_TYPE, input_dim=(3, 8, 8), num_classes=3, seed=0)
    twin = torch_twin.twin_layers(model.network, model.params)
    assert twin_parameter_count(twin) == model.num_parameters()
    names = [name for name, _ in twin]
    assert names[:13] == ["Conv2d", "Conv2d", "Conv2d", "ReLU", "BatchNorm2d", "ReLU", "GELU",
                          "Conv2d", "BatchNorm2d", "GELU", "Conv2d", "MaxPool2d", "BatchNorm2d"]
    assert names.count("Residual") == 2 and names[-2:] == ["Flatten", "Linear"]
    residual = twin[names.index("Residual")][1]
    assert [name for name, _ in residual["shortcut"]] == ["Conv2d", "BatchNorm2d"]  # 6 -> 5 channels
    assert twin[names.index("BatchNorm1d")][1] == {"num_features": 7, "eps": 1e-5, "momentum": 0.5}
    assert twin[names.index("Dropout")][1]["p"] == pytest.approx(0.1)


def test_the_benchmark_uses_convnets_default_learning_rates():
    from convnet.optim import RULES

    assert bench_train.LEARNING_RATES == {rule: RULES[rule].default_learning_rate for rule in bench_train.LEARNING_RATES}


# ---------------------------------------------------------------------------
# the fast recipe's blocks and options: inits, conv_bn_act, conv_pool_bn_act, floor pooling,
# batch-norm options, GELU, patch whitening, frozen parameters, the head
# ---------------------------------------------------------------------------


def test_conv_inits_he_uniform_and_dirac(rng):
    shape = (64, 16, 3, 3)  # fan_in 144
    he = blocks.init_filters(rng, "he", shape, np.float64)
    assert abs(he.std() - np.sqrt(2 / 144)) < 0.05 * np.sqrt(2 / 144)
    uniform = blocks.init_filters(rng, "uniform", shape, np.float64)
    bound = 1 / np.sqrt(144)
    assert np.abs(uniform).max() <= bound and np.abs(uniform).max() > 0.95 * bound
    assert abs(uniform.std() - bound / np.sqrt(3)) < 0.05 * bound
    dirac = blocks.init_filters(rng, "dirac", shape, np.float32)
    assert dirac.dtype == np.float32
    identity = np.zeros((16, 16, 3, 3))
    identity[np.arange(16), np.arange(16), 1, 1] = 1
    np.testing.assert_array_equal(dirac[:16], identity)
    assert np.abs(dirac[16:]).max() <= bound and dirac[16:].std() > 0.9 * bound / np.sqrt(3)


def test_a_dirac_convolution_passes_its_first_channels_through(rng):
    """F = 6 > C = 4: outputs 0..3 are the input channels plus their bias, 4..5 are uniform filters."""
    model = ConvNet([{"type": "conv", "filters": 6, "init": "dirac"}, "global_avgpool"], input_dim=(4, 5, 5),
                    dtype=np.float64, seed=0)
    x = rng.standard_normal((2, 4, 5, 5))
    out, _ = model.network.blocks[0].forward(model.params, x)
    bias = model.params["conv1.b"]
    assert np.abs(bias).max() <= 1 / 6 and np.abs(bias).max() > 0  # U(+-1/sqrt(36)), as PyTorch's bias
    np.testing.assert_allclose(out[:, :4] - bias[:4, None, None], x, atol=1e-12)
    assert np.abs(out[:, 4:] - bias[4:, None, None]).max() > 0.01


@pytest.mark.parametrize("kind", ["conv", "conv_relu", "conv_bn_relu", "conv_bn_act", "conv_pool_bn_act"])
def test_every_conv_family_takes_init(kind):
    layers = [{"type": kind, "filters": 4, "init": "dirac"}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 8, 8), seed=0)
    w = model.params["conv1.W"]
    assert np.array_equal(w[np.arange(3), np.arange(3), 1, 1], np.ones(3)) and np.count_nonzero(w[:3]) == 3
    with pytest.raises(ValueError, match=r"'layers\[0\].init' must be one of \['he', 'uniform', 'dirac'\], "
                                         r"got 'xavier'"):
        ConvNet([{"type": kind, "filters": 4, "init": "xavier"}], input_dim=(3, 8, 8))


def test_conv_bn_act_passes_its_batch_norm_options_and_activation(rng):
    layers = [{"type": "conv_bn_act", "filters": 4, "activation": "gelu", "momentum": 0.6, "eps": 1e-3,
               "scale": False}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 6, 6), dtype=np.float64, seed=0)
    conv, bn = model.network.blocks[:2]
    assert "conv1.b" not in model.params and bn.activation == "gelu"
    assert bn.bn_param["momentum"] == 0.6 and bn.bn_param["eps"] == 1e-3
    assert model.freeze_after == {"bn1.gamma": 0} and model.frozen == {"bn1.gamma"}
    x = rng.standard_normal((5, 3, 6, 6))
    features, _ = conv.forward(model.params, x)
    out, _ = bn.forward(model.params, features)
    # gamma = 1 fixed: gelu of the plain standardised features, statistics over N, H, W
    mean, var = features.mean(axis=(0, 2, 3), keepdims=True), features.var(axis=(0, 2, 3), keepdims=True)
    from convnet import layers as numpy_layers
    np.testing.assert_allclose(out, numpy_layers.gelu_forward((features - mean) / np.sqrt(var + 1e-3))[0], atol=1e-12)
    np.testing.assert_allclose(bn.bn_param["running_mean"], 0.4 * mean.reshape(-1), atol=1e-12)  # momentum 0.6
    _, grads = model.loss(x, rng.integers(10, size=5))
    assert "bn1.gamma" not in grads and {"conv1.W", "bn1.beta", "fc_out.W", "fc_out.b"} <= set(grads)


def test_conv_pool_bn_act_pools_before_the_batch_norm_and_floor_mode_fits_odd_inputs():
    layers = [{"type": "conv_pool_bn_act", "filters": 4, "size": 2, "pad": 0, "floor": True},
              {"type": "conv_pool_bn_act", "filters": 5, "floor": True},
              {"type": "conv_pool_bn_act", "filters": 6, "floor": True}, {"type": "pool", "size": 3}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 32, 32), seed=0)
    kinds = [type(stage).__name__ for stage in model.network.blocks[:3]]
    assert kinds == ["Conv", "MaxPool", "BatchNorm"]
    assert [stage.out_shape for stage in model.network.blocks[:12]] == [
        (4, 31, 31), (4, 15, 15), (4, 15, 15), (5, 15, 15), (5, 7, 7), (5, 7, 7), (6, 7, 7), (6, 3, 3), (6, 3, 3),
        (6, 1, 1), (6,), (10,)]
    strict = [dict(layers[0], floor=False)]
    with pytest.raises(ValueError, match=r"'layers\[0\]' \(conv_pool_bn_act\) does not fit its input \(3, 32, 32\): "
                                         r"pool window height 2 with stride 2 does not tile"):
        ConvNet(strict, input_dim=(3, 32, 32))


def test_pool_floor_mode_goes_31_15_7_3_and_the_default_stays_strict(rng):
    layers = [{"type": "pool", "floor": True}] * 3 + [{"type": "pool", "size": 3}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(2, 31, 31), seed=0)
    assert [stage.out_shape[1] for stage in model.network.blocks[:4]] == [15, 7, 3, 1]
    model.loss(rng.standard_normal((2, 2, 31, 31)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"'layers\[0\]' \(pool\) does not fit its input \(2, 31, 31\)"):
        ConvNet([{"type": "pool"}], input_dim=(2, 31, 31))
    with pytest.raises(ValueError, match=r"'layers\[0\].floor' must be true/false, got 'yes'"):
        ConvNet([{"type": "pool", "floor": "yes"}], input_dim=(2, 32, 32))


@pytest.mark.parametrize(
    "entry, message",
    [({"type": "conv_bn_act", "filters": 4, "activation": "tanh"},
      r"'layers\[0\].activation' must be one of \['relu', 'gelu'\], got 'tanh'"),
     ({"type": "conv_bn_act", "filters": 4, "momentum": 1.5}, r"'layers\[0\].momentum' must be in \[0, 1\], got 1.5"),
     ({"type": "conv_bn_act", "filters": 4, "eps": 0}, r"'layers\[0\].eps' must be > 0, got 0"),
     ({"type": "conv_pool_bn_act", "filters": 4, "scale": 1}, r"'layers\[0\].scale' must be true/false, got 1"),
     ({"type": "conv_pool_bn_act", "filters": 4, "pool": 0}, r"'layers\[0\].pool' must be >= 1, got 0"),
     ({"type": "batchnorm", "scale": "no"}, r"'layers\[0\].scale' must be true/false"),
     ({"type": "whiten", "size": 9}, r"'layers\[0\]' \(whiten\) does not fit its input \(3, 8, 8\): filter height 9 "
                                     r"is larger than the padded input height 8"),
     ({"type": "whiten", "images": 0}, r"'layers\[0\].images' must be >= 1, got 0"),
     ({"type": "whiten", "eps": -1.0}, r"'layers\[0\].eps' must be > 0, got -1.0"),
     ({"type": "whiten", "bias_epochs": -1}, r"'layers\[0\].bias_epochs' must be >= 0, got -1"),
     ({"type": "whiten", "bias_epochs": 1.5}, r"'layers\[0\].bias_epochs' must be an integer >= 0 or null"),
     ({"type": "gelu", "approximate": True}, r"'layers\[0\].approximate' for gelu: unknown")],
)
def test_bad_recipe_block_options_name_the_key(entry, message):
    with pytest.raises(ValueError, match=message):
        ConvNet([entry], input_dim=(3, 8, 8))
    with pytest.raises(ValueError, match=message.replace("'layers", "'model.layers")):
        validate_config({"name": "t", "model": {"type": "ConvNet", "input_dim": [3, 8, 8], "layers": [entry]}})


def correlated_images(rng, n=60, size=8):
    """Images whose channels and neighbouring pixels are strongly correlated (what whitening undoes)."""
    base = rng.standard_normal((n, 1, size + 1, size + 1))
    smooth = base[:, :, 1:, 1:] + base[:, :, :-1, :-1] + 0.3 * rng.standard_normal((n, 1, size, size))
    return np.concatenate([smooth, 2 * smooth + 0.1 * rng.standard_normal((n, 1, size, size)),
                           rng.standard_normal((n, 1, size, size))], axis=1)


def test_whiten_filters_decorrelate_the_training_patches(rng):
    """After initialize_from_data the first half of the outputs (zero bias) has covariance
    diag(lambda / (lambda + eps)): the identity for a tiny eps; the second half is its negative."""
    X = correlated_images(rng)
    model = ConvNet([{"type": "whiten", "size": 2, "eps": 1e-9, "images": 50}, "global_avgpool"],
                    input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    whiten = model.network.blocks[0]
    assert model.params["whiten1.W"].shape == (24, 3, 2, 2) and whiten.out_shape == (24, 7, 7)
    assert not model.params["whiten1.W"].any(), "the filters come from the data, not from the seed"
    model.initialize_from_data(X)
    out, _ = whiten.forward(model.params, X[:50])
    half = out[:, :12].transpose(0, 2, 3, 1).reshape(-1, 12)
    np.testing.assert_allclose(half.T @ half / len(half), np.eye(12), atol=1e-6)
    np.testing.assert_array_equal(out[:, 12:], -out[:, :12])
    later, _ = whiten.forward(model.params, X[50:])  # images 50.. were not used
    rest = later[:, :12].transpose(0, 2, 3, 1).reshape(-1, 12)
    assert np.abs(rest.T @ rest / len(rest) - np.eye(12)).max() > 1e-3
    reference = blocks.patch_whitening_filters(X[:50], 2, 1e-9)
    np.testing.assert_array_equal(model.params["whiten1.W"], reference)


def test_whitening_filters_from_many_images_whiten_all_their_patches(rng):
    """More images than one chunk of the second-moment sum: the filters F (D, D) still satisfy
    F Sigma F^T = diag(lambda / (lambda + eps)) for the Sigma of every patch of every image."""
    X = rng.standard_normal((600, 2, 4, 4)) + np.linspace(0, 1, 16).reshape(1, 1, 4, 4)
    filters = blocks.patch_whitening_filters(X, 2, 1e-3)
    patches = np.lib.stride_tricks.sliding_window_view(X, (2, 2), axis=(2, 3)).transpose(0, 2, 3, 1, 4, 5)
    patches = patches.reshape(-1, 8)
    sigma = patches.T @ patches / len(patches)
    F = filters[:8].reshape(8, 8)
    eigenvalues = np.linalg.eigvalsh(sigma)
    np.testing.assert_allclose(F @ sigma @ F.T, np.diag(eigenvalues / (eigenvalues + 1e-3)), atol=1e-10)


def test_whiten_freezes_its_filters_always_and_its_bias_after_bias_epochs(rng):
    X, y = correlated_images(rng, 8), rng.integers(10, size=8)
    layers = [{"type": "whiten", "bias_epochs": 3}, {"type": "conv_bn_act", "filters": 4}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    assert model.freeze_after == {"whiten1.W": 0, "whiten1.b": 3} and model.frozen == {"whiten1.W"}
    assert ConvNet(layers[1:], input_dim=(3, 8, 8)).freeze_after == {}
    model.initialize_from_data(X)
    _, grads = model.loss(X, y)
    assert "whiten1.W" not in grads and "whiten1.b" in grads
    model.frozen = {"whiten1.W", "whiten1.b"}  # what the Solver sets from epoch 3 on
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params) - model.frozen


def test_initialize_from_data_checks_its_images_and_leaves_other_nets_alone(rng):
    model = ConvNet([{"type": "conv", "filters": 2}, "global_avgpool"], input_dim=(3, 8, 8), seed=0)
    before = {name: value.copy() for name, value in model.params.items()}
    model.initialize_from_data(rng.standard_normal((4, 3, 8, 8)))
    assert all(np.array_equal(before[name], model.params[name]) for name in before)
    with pytest.raises(ValueError, match=r"X must have shape \(N, 3, 8, 8\), got \(4, 3, 9, 9\)"):
        model.initialize_from_data(rng.standard_normal((4, 3, 9, 9)))


def test_a_whiten_block_after_others_sees_the_images_as_they_reach_it(rng):
    X = correlated_images(rng, 20)
    model = ConvNet([{"type": "pool", "size": 1}, {"type": "whiten", "size": 1, "images": 10}, "global_avgpool"],
                    input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    model.initialize_from_data(X)
    np.testing.assert_array_equal(model.params["whiten1.W"], blocks.patch_whitening_filters(X[:10], 1, 5e-4))


class CallLog:
    """Records the compute_dx / compute_dw flags of each conv_backward call, by filter shape."""

    def __init__(self, monkeypatch):
        from convnet import conv_layers

        self.calls, original = [], conv_layers.conv_backward

        def logged(dout, cache, compute_dx=True, compute_dw=True):
            self.calls.append((cache.w.shape, compute_dx, compute_dw))
            return original(dout, cache, compute_dx=compute_dx, compute_dw=compute_dw)

        monkeypatch.setattr(conv_layers, "conv_backward", logged)


def test_frozen_parameters_get_no_gradient_work_and_the_first_trainable_block_skips_dx(rng, monkeypatch):
    layers = [{"type": "whiten", "size": 2}, {"type": "conv_bn_act", "filters": 4},
              {"type": "conv_pool_bn_act", "filters": 5, "floor": True}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    X, y = correlated_images(rng, 6), rng.integers(10, size=6)
    model.initialize_from_data(X)
    _, everything = model.loss(X, y)
    log = CallLog(monkeypatch)
    model.loss(X, y)
    # the whitening filters are frozen: no dW; its bias trains, so the next conv still needs dx
    assert log.calls == [((5, 4, 3, 3), True, True), ((4, 24, 3, 3), True, True), ((24, 3, 2, 2), False, False)]
    log.calls.clear()
    model.frozen = {"whiten1.W", "whiten1.b"}
    _, grads = model.loss(X, y)
    # nothing before conv1 trains: it skips dx, and the whitening layer is not visited at all
    assert log.calls == [((5, 4, 3, 3), True, True), ((4, 24, 3, 3), False, True)]
    assert set(grads) == set(everything) - {"whiten1.b"}
    for name in grads:  # freezing changes which gradients are computed, not their values
        np.testing.assert_array_equal(grads[name], everything[name])
    log.calls.clear()
    model.frozen = {"whiten1.W", "whiten1.b", "conv2.W", "bn1.gamma"}
    _, grads = model.loss(X, y)
    assert log.calls == [((5, 4, 3, 3), True, False), ((4, 24, 3, 3), False, True)]
    assert "conv2.W" not in grads and "bn1.gamma" not in grads and "bn1.beta" in grads


def test_a_frozen_weight_is_not_regularised(rng):
    """Under reg, a frozen weight adds neither a gradient nor a term to the loss (it is a constant)."""
    layers = [{"type": "whiten", "size": 1}, {"type": "conv_bn_act", "filters": 4}, "global_avgpool"]
    model = ConvNet(layers, input_dim=(3, 8, 8), reg=0.1, dtype=np.float64, seed=0)
    X, y = correlated_images(rng, 6), rng.integers(10, size=6)
    model.initialize_from_data(X)
    loss, grads = model.loss(X, y)
    assert "whiten1.W" not in grads and "whiten1.W" not in model.regularized() and "conv1.W" in model.regularized()
    unregularised = ConvNet(layers, input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    unregularised.initialize_from_data(X)
    penalty = 0.05 * sum(np.sum(model.params[name] ** 2) for name in ("conv1.W", "fc_out.W"))
    assert loss == pytest.approx(unregularised.loss(X, y)[0] + penalty, rel=1e-12)


def test_head_options_bias_scale_and_init(rng):
    X = rng.standard_normal((4, 3, 8, 8))
    layers = [{"type": "conv_bn_act", "filters": 4}, "global_avgpool"]
    plain = ConvNet(layers, input_dim=(3, 8, 8), dtype=np.float64, seed=0)
    scaled = ConvNet(layers, input_dim=(3, 8, 8), head_bias=False, head_scale=0.125, dtype=np.float64, seed=0)
    assert "fc_out.b" not in scaled.params and "fc_out.b" in plain.params
    plain.params["fc_out.b"][...] = 0
    np.testing.assert_allclose(scaled.loss(X), 0.125 * plain.loss(X), rtol=1e-12)
    uniform = ConvNet(layers, input_dim=(3, 8, 8), head_init="uniform", seed=0)
    bound = 1 / np.sqrt(4)
    assert np.abs(uniform.params["fc_out.W"]).max() <= bound and uniform.params["fc_out.W"].std() > 0.3 * bound
    assert np.abs(uniform.params["fc_out.b"]).max() <= bound and np.abs(uniform.params["fc_out.b"]).max() > 0
    assert plain.params["fc_out.W"].std() < 0.03  # small: N(0, 0.01^2)
    for arguments, message in [({"head_scale": 0.0}, "'head_scale' must be > 0, got 0.0"),
                               ({"head_init": "he"}, r"'head_init' must be one of \['small', 'uniform'\]"),
                               ({"head_bias": 0}, "'head_bias' must be true/false"),
                               ({"label_smoothing": 1.0}, r"'label_smoothing' must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=message):
            ConvNet(layers, input_dim=(3, 8, 8), **arguments)


def test_convnet_label_smoothing_is_the_smoothed_softmax_loss_of_its_scores(rng):
    from convnet import layers as numpy_layers

    X, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(10, size=4)
    model = ConvNet([{"type": "conv_relu", "filters": 4}, "global_avgpool"], input_dim=(3, 8, 8),  # no batch norm:
                    label_smoothing=0.2, dtype=np.float64, seed=0)  # the same scores in train and test mode
    model.params["fc_out.W"] *= 100
    loss, _ = model.loss(X, y)
    assert loss == pytest.approx(numpy_layers.softmax_loss(model.loss(X), y, label_smoothing=0.2)[0], rel=1e-12)
    assert loss != pytest.approx(numpy_layers.softmax_loss(model.loss(X), y)[0], rel=1e-3)


def test_the_whitening_filters_are_part_of_the_model_state(rng, tmp_path):
    """The filters are parameters: model files and checkpoints carry them, and a fresh model of the
    same config (zero filters) predicts the same after loading them; its frozen set is the same."""
    layers = [{"type": "whiten", "bias_epochs": 2}, {"type": "conv_pool_bn_act", "filters": 4, "scale": False,
                                                       "floor": True}, "global_avgpool"]
    X = correlated_images(rng, 10)
    model = ConvNet(layers, input_dim=(3, 8, 8), head_bias=False, seed=0)
    model.initialize_from_data(X)
    model.loss(X.astype(np.float32), rng.integers(10, size=10))
    assert "param/whiten1.W" in model.state()
    model.save(tmp_path / "weights.npz")
    fresh = ConvNet(layers, input_dim=(3, 8, 8), head_bias=False, seed=1)
    assert fresh.freeze_after == model.freeze_after and fresh.frozen == model.frozen
    fresh.load(tmp_path / "weights.npz")
    np.testing.assert_array_equal(fresh.loss(X.astype(np.float32)), model.loss(X.astype(np.float32)))


class Shift(blocks.Block):
    """A stage from outside convnet with a parameter and no param_names: y = x + b."""

    def __init__(self, model, in_shape):
        super().__init__(in_shape)
        model.params["shift.b"] = np.zeros(in_shape[0])

    def forward(self, params, x):
        return x + params["shift.b"][:, None, None], None

    def backward(self, params, dout, cache, grads, need_dx=True):
        grads["shift.b"] = dout.sum(axis=(0, 2, 3))
        return dout


def test_a_stage_that_does_not_name_its_parameters_is_never_skipped(rng):
    """Skipping the backward pass of an untrainable prefix must not skip a stage convnet cannot see into."""
    model = ConvNet([{"type": "whiten", "size": 1}, {"type": "conv_bn_act", "filters": 2}, "global_avgpool"],
                    input_dim=(3, 4, 4), dtype=np.float64, seed=0)
    model.network.blocks.insert(0, Shift(model, (3, 4, 4)))
    model.frozen = {"whiten1.W", "whiten1.b"}
    _, grads = model.loss(rng.standard_normal((2, 3, 4, 4)), np.array([0, 1]))
    assert "shift.b" in grads and "whiten1.b" not in grads
