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
    {"type": "conv", "filters": 4}, {"type": "conv_relu", "filters": 4, "size": 1}, "batchnorm", "relu",
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
    assert np.isfinite(loss) and set(grads) == set(model.params)


def test_parameter_names_and_order_are_those_of_the_block_list():
    model = ConvNet(EVERY_TYPE, input_dim=(3, 8, 8), num_classes=3, seed=1)
    assert list(model.params) == [
        "conv1.W", "conv1.b", "conv2.W", "conv2.b", "bn1.gamma", "bn1.beta", "conv3.W", "bn2.gamma", "bn2.beta",
        "res1.conv1.W", "res1.bn1.gamma", "res1.bn1.beta", "res1.conv2.W", "res1.bn2.gamma", "res1.bn2.beta",
        "res1.proj.W", "res1.proj_bn.gamma", "res1.proj_bn.beta",
        "res2.conv1.W", "res2.bn1.gamma", "res2.bn1.beta", "res2.conv2.W", "res2.bn2.gamma", "res2.bn2.beta",
        "fc1.W", "fc1.b", "bn3.gamma", "bn3.beta", "fc2.W", "fc2.b", "fc_out.W", "fc_out.b",
    ]
    assert model.params["conv3.W"].shape == (6, 4, 2, 2) and model.params["fc1.W"].shape == (5, 7)
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
    assert names[:8] == ["Conv2d", "Conv2d", "ReLU", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU"]
    assert names.count("Residual") == 2 and names[-2:] == ["Flatten", "Linear"]
    residual = twin[names.index("Residual")][1]
    assert [name for name, _ in residual["shortcut"]] == ["Conv2d", "BatchNorm2d"]  # 6 -> 5 channels
    assert twin[names.index("BatchNorm1d")][1] == {"num_features": 7, "eps": 1e-5, "momentum": 0.5}
    assert twin[names.index("Dropout")][1]["p"] == pytest.approx(0.1)


def test_the_benchmark_uses_convnets_default_learning_rates():
    from convnet.optim import RULES

    assert bench_train.LEARNING_RATES == {rule: RULES[rule].default_learning_rate for rule in bench_train.LEARNING_RATES}
