"""Experiment configs: the shipped files validate, bad keys and values are named, overrides work."""

from pathlib import Path

import pytest
import yaml

from convnet.config import ConfigError, apply_override, load_config, validate_config

# sweep_*.yaml files are sweep files (convnet.sweep), tested in tests/test_sweep.py
EXPERIMENTS = sorted(p for p in (Path(__file__).parent.parent / "experiments").glob("*.yaml")
                     if not p.name.startswith("sweep_"))


def minimal(**sections):
    return {"name": "t", "model": {"type": "ConvNet"}, **sections}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_shipped_experiments_validate(path):
    config = load_config(path)
    assert config["name"] == path.stem
    assert config["model"]["dtype"] == "float32"


def test_there_are_the_four_documented_experiments():
    names = {p.stem for p in EXPERIMENTS}
    assert {"quickstart", "cifar10_three_layer", "cifar10_convnet", "cifar10_best"} <= names


def test_defaults_are_filled_in():
    config = validate_config(minimal())
    assert config["data"]["source"] == "sample"
    assert config["optim"] == {"rule": "sgd"}
    assert config["schedule"] == {"type": "constant"}
    assert config["solver"]["batch_size"] == 100
    assert config["model"]["input_dim"] == [3, 32, 32]
    yaml.safe_dump(config)  # the resolved config is plain YAML


@pytest.mark.parametrize(
    "raw, message",
    [
        (minimal(optm={}), r"config key 'optm': unknown; did you mean 'optim'\?"),
        (minimal(solver={"batchsize": 3}), r"'solver.batchsize': unknown; did you mean 'batch_size'\?"),
        (minimal(solver={"batch_size": "64"}), r"'solver.batch_size' must be an integer >= 1, got '64'"),
        (minimal(solver={"batch_size": 0}), r"'solver.batch_size' must be >= 1"),
        (minimal(solver={"num_epochs": 0}), r"'solver.num_epochs' must be > 0, got 0"),
        (minimal(data={"source": "cifar"}), r"'data.source' must be one of \['sample', 'cifar10'\].*'cifar10'"),
        (minimal(data={"normalization": "std"}), r"'data.normalization' must be one of"),
        (minimal(data={"augment": {"flip": "yes"}}), r"'data.augment.flip' must be one of \[true, false, 'alternating'\], got 'yes'"),
        (minimal(data={"download": True}), r"'data.download' only applies to data.source 'cifar10'"),
        ({"name": "t", "model": {"type": "ConvNett"}}, r"'model.type' must be one of .*did you mean 'ConvNet'"),
        ({"name": "t", "model": {"type": "ConvNet", "layer": []}}, r"'model.layer' for ConvNet: unknown; did you mean 'layers'"),
        ({"name": "t", "model": {"type": "ConvNet", "dtype": "float16"}}, r"'model.dtype' must be one of \['float32', 'float64'\], got 'float16'"),
        ({"name": "t", "model": {"type": "ConvNet", "layers": [{"type": "conv"}]}}, r"'model.layers\[0\].filters' is required for conv"),
        ({"name": "t", "model": {"type": "FullyConnectedNet"}}, r"'model.hidden_dims' is required for FullyConnectedNet"),
        (minimal(optim={"rule": "adam", "momentum": 0.9}), r"'optim.momentum' for adam: unknown \(allowed: learning_rate"),
        (minimal(optim={"rule": "sgd", "learning_rate": -1}), r"'optim.learning_rate' must be >= 0"),
        (minimal(optim={"rule": "adagrad"}), r"'optim.rule' must be one of"),
        (minimal(schedule={"type": "cosine", "warmup": 1}), r"'schedule.warmup' for cosine: unknown"),
        ({"model": {"type": "ConvNet"}}, r"config key 'name' is required"),
        (["a", "list"], "a config must be a YAML mapping"),
    ],
)
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(raw)


def test_overrides_parse_yaml_values_and_index_lists():
    raw = minimal(model={"type": "ConvNet", "layers": [{"type": "conv", "filters": 8}, "global_avgpool"]})
    apply_override(raw, "optim.learning_rate=3e-4")
    apply_override(raw, "model.layers.0.filters=16")
    apply_override(raw, "data.augment={flip: true}")
    apply_override(raw, "solver.num_train_samples=null")
    config = validate_config(raw)
    assert config["optim"]["learning_rate"] == pytest.approx(3e-4)
    assert config["model"]["layers"][0]["filters"] == 16
    assert config["data"]["augment"]["flip"] is True
    assert config["solver"]["num_train_samples"] is None


@pytest.mark.parametrize(
    "assignment, message",
    [("optim.learning_rate", "expects KEY=VALUE"), ("model.layers.7.filters=3", "must index the list"),
     ("name.x=1", "'name' is not a section"), ("optim..rule=sgd", "empty key")],
)
def test_bad_overrides_are_explained(assignment, message):
    raw = minimal(model={"type": "ConvNet", "layers": ["global_avgpool"]})
    with pytest.raises(ConfigError, match=message):
        apply_override(raw, assignment)


def test_load_config_reports_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(broken)
