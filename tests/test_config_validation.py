"""Every bad config is refused by `python -m convnet.train` before any data is loaded.

One helper, :func:`assert_refused`, runs ``train.main`` on a config and checks everything a
user relies on: exit status 2, one line on stderr naming the key, no traceback, no data read.
"""

import inspect

import numpy as np
import pytest
import yaml

from convnet import config_tables, data, experiment, train
from convnet.config import AVAILABLE_IMAGES, load_config, model_options, validate_config
from convnet.models import MODEL_TYPES
from convnet.options import REQUIRED, ConfigError
from convnet.schedules import make_schedule

BASE = {
    "name": "t",
    "model": {"type": "ConvNet", "layers": [{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"]},
    "solver": {"num_epochs": 1},
}
DOCS = experiment.Path(__file__).parent.parent / "docs" / "experiments.md"


@pytest.fixture
def no_data(monkeypatch):
    """Make reading any image fail the test: validation must refuse before that."""

    def loaded(*args, **kwargs):
        raise AssertionError("data was loaded before the config was refused")

    for module, name in ((experiment, "build_data"), (data, "load_sample"), (data, "load_cifar10"),
                         (data, "get_sample_data"), (data, "prepare_splits")):
        monkeypatch.setattr(module, name, loaded)


def write_config(tmp_path, raw):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def assert_refused(capsys, argv, expected):
    """train.main(argv) exits 2 with one line on stderr that contains `expected`, and no traceback."""
    status = train.main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert expected in err, err
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def merged(**sections):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in sections.items():
        raw[key] = value
    return raw


def convnet(*layers, **options):
    return {"type": "ConvNet", "layers": list(layers), **options}


# (config or --set overrides, what the one error line must name)
REFUSED = [
    (merged(schedule={"type": "step", "step_size": 0}), "'schedule.step_size' must be >= 1, got 0"),
    (merged(schedule={"type": "cosine", "warmup_epochs": "one"}), "'schedule.warmup_epochs' must be a number"),
    (merged(schedule={"type": "exponential", "decay": 0}), "'schedule.decay' must be in (0, 1]"),
    (merged(schedule={"type": "step", "milestones": 3}), "'schedule.milestones' must be a list"),
    # options that do not fit together or with the length of training (BASE trains 1 epoch)
    (merged(schedule={"type": "cosine", "warmup_epochs": 1}),
     "'schedule.warmup_epochs' must be less than solver.num_epochs (1), got 1"),
    (merged(schedule={"type": "onecycle", "peak_epoch": 2.5}),
     "'schedule.peak_epoch' must be less than solver.num_epochs (1), got 2.5"),
    (merged(schedule={"type": "step", "milestones": [5, 2]}), "'schedule.milestones' must be increasing, got [5, 2]"),
    (merged(schedule={"type": "step", "milestones": [2, 2]}), "'schedule.milestones' must be increasing, got [2, 2]"),
    (merged(model={**BASE["model"], "reg": "abc"}), "'model.reg' must be a number >= 0, got 'abc'"),
    (merged(model={"type": "FullyConnectedNet", "hidden_dims": 5}), "'model.hidden_dims' must be a list"),
    (merged(model={"type": "FullyConnectedNet", "hidden_dims": [10, 0]}), "'model.hidden_dims[1]' must be >= 1"),
    (merged(model={"type": "TwoLayerNet", "weight_scale": -1}), "'model.weight_scale' must be > 0"),
    (merged(model={"type": "ThreeLayerConvNet", "input_dim": [3, 32]}), "'model.input_dim' must be a list of 3"),
    (merged(model=convnet("global_avgpool", {"type": "dropout", "keep": 0})), "'model.layers[1].keep' must be in (0, 1]"),
    (merged(model=convnet("global_avgpool", {"type": "dropout", "keep": 1.5})), "'model.layers[1].keep'"),
    (merged(model=convnet({"type": "conv", "filters": 4, "stride": 0})), "'model.layers[0].stride' must be >= 1"),
    (merged(model=convnet({"type": "pool", "size": 0})), "'model.layers[0].size' must be >= 1"),
    (merged(model=convnet({"type": "batchnorm", "eps": 0})), "'model.layers[0].eps' must be > 0"),
    (merged(model=convnet({"type": "conv_bn_relu", "filters": 8}, {"type": "pool", "size": 3})),
     "'model.layers[1]' (pool) does not fit its input (8, 32, 32)"),
    (merged(model=convnet({"type": "conv", "filters": 4, "stride": 2})),
     "'model.layers[0]' (conv) does not fit its input (3, 32, 32)"),
    (merged(model=convnet("pool", "pool", "pool", "pool", "pool", "pool")),
     "'model.layers[5]' (pool) does not fit its input (3, 1, 1)"),
    (merged(model=convnet("global_avgpool", "pool")), "'model.layers[1]' (pool) needs (C, H, W) input"),
    (merged(model={"type": "ConvNet", "input_dim": [3, 30, 30]}), "'model.layers[5]' (pool) does not fit its input (64, 15, 15)"),
    (merged(model={**BASE["model"], "input_dim": [3, 16, 16]}), "'model.input_dim' is [3, 16, 16], but the images"),
    (merged(model={"type": "TwoLayerNet", "input_dim": 1000}), "'model.input_dim' is 1000, but the images of data.source "
                                                               "'sample' are (3, 32, 32): use 3072"),
    (merged(model={**BASE["model"], "num_classes": 5}), "'model.num_classes' is 5, but data.source 'sample' has 10"),
    (merged(model=convnet({"type": "residul", "filters": 4})), "did you mean 'residual'"),
    (merged(model=convnet({"type": ["conv"], "filters": 4})), "'model.layers[0].type' must be one of"),
    (merged(model={"type": {"name": "ConvNet"}}), "'model.type' must be one of"),
    (merged(optim={"rule": ["sgd"]}), "'optim.rule' must be one of"),
    (merged(schedule={"type": ["cosine"]}), "'schedule.type' must be one of"),
    (merged(seed=-1), "'seed' must be >= 0, got -1"),
    (merged(model={"type": "TwoLayerNet", "hidden_dim": 10**9}), "'model' (TwoLayerNet) asks for 3.08e+12 weights"),
    (merged(model=convnet({"type": "conv", "filters": 10**9}, "global_avgpool")), "'model' (ConvNet) asks for 3.7e+10"),
    (merged(model=convnet({"type": "conv", "filters": 10**8}, "global_avgpool")),
     "'model' (ConvNet) asks for 1.03e+13 activations for a batch of 100 images"),
    (merged(model={"type": "FullyConnectedNet", "hidden_dims": [10**6] * 10}), "'model' (FullyConnectedNet) asks for"),
    (merged(model={"type": "FullyConnectedNet", "hidden_dims": [5], "normalization": "bn"}),
     "'model.normalization' must be one of [null, 'batchnorm', 'layernorm'], got 'bn'"),  # null: as YAML writes it
    (merged(threads=10**20), "'threads' must be in [1, 1024], got 100000000000000000000"),  # a C int in the kernels
    (merged(optim={"rule": "adam", "beta1": 1}), "'optim.beta1' must be in [0, 1), got 1"),
    (merged(optim={"rule": "sgd_momentum", "momentum": "high"}), "'optim.momentum' must be a number in [0, 1)"),
    (merged(optim={"rule": "rmsprop", "epsilon": 0}), "'optim.epsilon' must be > 0"),
    (merged(data={"num_training": 3000}), "'data.num_training' is 3000 (+ data.num_validation 1000), but the "
                                          "bundled sample holds only 2700"),
    (merged(data={"num_training": 2000, "num_validation": 800}), "'data.num_training' is 2000"),
    (merged(data={"num_validation": 2700}), "'data.num_validation' is 2700, which leaves no training images"),
    (merged(data={"num_test": 501}), "'data.num_test' is 501, but the bundled sample holds only 500"),
    (merged(data={"source": "cifar10", "num_training": 50000}), "'data.num_training' is 50000"),
    (merged(data={"source": "cifar10", "num_test": 10001}), "'data.num_test' is 10001"),
    (["--set", "model.layers.1.size=3"], "'model.layers.1' is not a section (it is 'pool')"),
    (["--set", "schedule.min_lr=0.01", "--set", "schedule.type=cosine", "--set", "schedule.min_lr=-1"],
     "'schedule.min_lr' must be >= 0"),
    # what a model constructor refuses is refused here, before the data is loaded
    (merged(model={"type": "ThreeLayerConvNet", "filter_size": 4}), "'model.filter_size' must be odd"),
    (merged(model={"type": "ThreeLayerConvNet", "input_dim": [3, 31, 31]}), "'model.input_dim' must have an even H"),
    # runs go to <output.dir>/<name>/<timestamp>/: a name must be one directory name
    (merged(name="../../elsewhere"), "config key 'name' must be a plain directory name"),
    (merged(name=""), "config key 'name' must be a plain directory name"),
    (merged(name=".."), "config key 'name' must be a plain directory name"),
    (merged(model={"layers": ["pool"]}), "config key 'model.type' is required: one of ['TwoLayerNet'"),
    (["--set", "solver.batch_size=[1"], "--set 'solver.batch_size=[1': the value is not valid YAML"),
    (["--set", "data.augment={flip: true, flip: false}"], "the value: key 'flip' is written twice in one mapping"),
]


@pytest.mark.parametrize("case, expected", REFUSED, ids=[expected for _, expected in REFUSED])
def test_train_refuses_before_loading_data(tmp_path, capsys, no_data, case, expected):
    if isinstance(case, dict):
        argv = [str(write_config(tmp_path, case))]
    else:
        argv = [str(write_config(tmp_path, BASE)), *case]
    assert_refused(capsys, argv + ["--output-dir", str(tmp_path / "runs")], expected)


def test_an_empty_output_dir_is_refused(tmp_path, capsys, no_data):
    assert_refused(capsys, [str(write_config(tmp_path, merged(output={"dir": ""})))], "'output.dir' is empty")


def test_output_dir_under_a_regular_file_is_refused(tmp_path, capsys, no_data):
    (tmp_path / "notes.txt").write_text("a file")
    argv = [str(write_config(tmp_path, BASE)), "--output-dir", str(tmp_path / "notes.txt" / "runs")]
    assert_refused(capsys, argv, f"'output.dir' is '{tmp_path / 'notes.txt' / 'runs'}', but "
                                 f"'{tmp_path / 'notes.txt'}' is a file")


@pytest.mark.parametrize(
    "content, expected",
    [(None, "is a directory"), (bytes(range(256)) * 4, "is not a text file"),
     (b"name: \x01\x02\x03", "is not valid YAML")],
    ids=["directory", "binary", "control-characters"],
)
def test_unreadable_config_paths_are_refused(tmp_path, capsys, no_data, content, expected):
    path = tmp_path
    if content is not None:
        path = tmp_path / "exp.yaml"
        path.write_bytes(content)
    assert_refused(capsys, [str(path)], f"{path} {expected}")


def test_a_key_written_twice_is_refused_not_silently_dropped(tmp_path, capsys, no_data):
    """PyYAML keeps the last of two equal keys: the first `solver:` section would be thrown away."""
    text = yaml.safe_dump(BASE, sort_keys=False) + "solver: {batch_size: 10}\n"
    assert yaml.safe_load(text)["solver"] == {"batch_size": 10}  # what PyYAML alone would train with
    path = write_config(tmp_path, text)
    assert_refused(capsys, [str(path)], f"{path}: key 'solver' is written twice in one mapping (lines ")


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    """`<<: *defaults` then a key of its own is not a key written twice."""
    text = ("defaults: &solver {batch_size: 10, num_epochs: 2}\n" + yaml.safe_dump(BASE, sort_keys=False)
            .replace("solver:\n  num_epochs: 1\n", "solver:\n  <<: *solver\n  num_epochs: 3\n"))
    raw = yaml.safe_load(text)
    assert raw["solver"] == {"batch_size": 10, "num_epochs": 3}
    with pytest.raises(ConfigError, match="'defaults': unknown"):  # the whole file is read, then validated
        load_config(write_config(tmp_path, text))
    del raw["defaults"]
    assert validate_config(raw)["solver"]["batch_size"] == 10


def test_yaml_1_1_numbers_written_as_strings_are_numbers(tmp_path):
    """`min_lr: 1e-5` is a string to PyYAML; the resolved config holds the number, and the schedule runs."""
    path = write_config(tmp_path, yaml.safe_dump(BASE) + "schedule: {type: cosine, warmup_epochs: 0.5, min_lr: 1e-5}\n")
    assert yaml.safe_load(path.read_text())["schedule"]["min_lr"] == "1e-5"
    config = load_config(path)
    assert config["schedule"] == {"type": "cosine", "warmup_epochs": 0.5, "min_lr": 1e-5}
    schedule = make_schedule(config["schedule"], base_lr=0.1, num_epochs=4)
    assert schedule(4) == pytest.approx(1e-5)
    assert make_schedule({"type": "cosine", "min_lr": "1e-5"}, 0.1, 4)(4) == pytest.approx(1e-5)


def test_the_bundled_sample_holds_the_counts_validation_assumes():
    X_train, _, X_test, _ = data.load_sample()
    assert AVAILABLE_IMAGES["sample"] == (len(X_train), len(X_test))


def test_a_config_that_fits_the_data_exactly_is_accepted(tmp_path):
    config = validate_config(merged(data={"num_training": 2200, "num_validation": 500, "num_test": 500}))
    assert config["data"]["num_training"] == 2200
    (tmp_path / "runs").mkdir()
    validate_config(merged(output={"dir": str(tmp_path / "runs" / "new" / "deeper")}))


@pytest.mark.parametrize("kind, options", [
    ("ThreeLayerConvNet", {"filter_size": 4}),
    ("ThreeLayerConvNet", {"input_dim": [3, 31, 32]}),
    ("FullyConnectedNet", {"hidden_dims": [5], "dropout_keep_ratio": 0}),
    ("FullyConnectedNet", {"hidden_dims": [5], "normalization": "bn"}),
    ("ConvNet", {"layers": ["global_avgpool", "pool"]}),
    ("ConvNet", {"input_dim": [3, 30, 30]}),
    ("ConvNet", {"layers": [{"type": "conv", "filters": 4, "stride": 3}]}),
])
def test_what_a_model_constructor_refuses_validation_refuses_first(kind, options):
    """The constructor runs after the data is loaded; validation must refuse the same options before."""
    arguments = {key: tuple(value) if key == "input_dim" else value for key, value in options.items()}
    with pytest.raises(ValueError):
        MODEL_TYPES[kind](**arguments)
    with pytest.raises(ConfigError, match=r"config key 'model\.(layers\[\d\]|" + "|".join(options) + ")"):
        validate_config(merged(model={"type": kind, **options}))


@pytest.mark.parametrize("model", [
    {"type": "TwoLayerNet", "hidden_dim": 7},
    {"type": "FullyConnectedNet", "hidden_dims": [9, 5, 3], "normalization": "batchnorm"},
    {"type": "ThreeLayerConvNet", "num_filters": 4, "filter_size": 5, "hidden_dim": 6},
    {"type": "ConvNet"},
    convnet({"type": "conv_relu", "filters": 3, "size": 5}, {"type": "residual", "filters": 4}, "pool",
            {"type": "residual", "filters": 4}, "global_avgpool", {"type": "affine_relu", "units": 6}),
])
def test_the_memory_check_counts_the_weights_the_model_builds(model):
    """weight_count (what validation compares with the machine's memory) is the built model's weight count."""
    config = validate_config(merged(model=model))
    options = {key: value for key, value in config["model"].items() if key != "type"}
    built = experiment.build_model(config)
    weights = sum(value.size for value in built.params.values() if value.ndim >= 2)
    assert MODEL_TYPES[model["type"]].weight_count(options) == weights


def test_the_memory_check_counts_what_a_batch_really_holds():
    """Activations count at most every training image per batch (a batch_size above it is one full batch),
    and the count is a lower bound of what the built network's blocks produce."""
    wide = convnet({"type": "conv_bn_relu", "filters": 8}, "pool", {"type": "residual", "filters": 8}, "global_avgpool")
    validate_config(merged(model=wide, solver={"batch_size": 10**15}))  # 1700 images per batch: fits
    options = {key: value for key, value in validate_config(merged(model=wide))["model"].items() if key != "type"}
    built = MODEL_TYPES["ConvNet"](**{**options, "input_dim": tuple(options["input_dim"])})
    produced = sum(int(np.prod(stage.out_shape)) for stage in built.network.blocks)
    assert int(np.prod(built.network.blocks[-1].out_shape)) == 10
    assert MODEL_TYPES["ConvNet"].activation_count(options) <= produced


@pytest.mark.parametrize("kind", list(MODEL_TYPES))
def test_model_options_are_the_constructor_arguments(kind):
    """Each declared option is a constructor argument with the same default (dtype: float32 in configs),
    and every positional constructor argument but seed is declared (keyword-only aliases are not)."""
    parameters = inspect.signature(MODEL_TYPES[kind].__init__).parameters
    positional = [name for name, p in parameters.items()
                  if p.kind is p.POSITIONAL_OR_KEYWORD and name not in ("self", "seed")]
    declared = model_options(kind)
    assert sorted(declared) == sorted(positional)
    for name, option in declared.items():
        default = parameters[name].default
        if name == "dtype":
            assert option.default == "float32"
        elif default is inspect.Parameter.empty:
            assert option.default is REQUIRED, name
        else:
            assert option.default == (list(default) if isinstance(default, tuple) else default), name


def test_model_defaults_from_the_declarations_build_the_model():
    config = validate_config(merged(model={"type": "ThreeLayerConvNet", "num_filters": 2, "hidden_dim": 3}))
    model = experiment.build_model(config)
    assert model.params["W1"].shape == (2, 3, 7, 7) and model.params["W1"].dtype == np.float32


def test_docs_tables_match_the_declarations():
    text = DOCS.read_text()
    assert text.count("<!-- generated:") == 5
    assert config_tables.update(text) == text, "run: python -m convnet.config_tables docs/experiments.md"


def test_docs_tables_follow_a_changed_declaration(monkeypatch):
    from convnet import config

    monkeypatch.setitem(config.SOLVER, "batch_size", config.Option(64, int, range="[2, inf)", help="per update"))
    table = config_tables.sections_table()
    assert "| `solver.batch_size` | `64` | an integer >= 2 | per update |" in table
    assert config_tables.update(DOCS.read_text()) != DOCS.read_text()


def test_the_kind_rows_read_the_kind_options(monkeypatch):
    """optim.rule and schedule.type: the default validation fills in is the one the sections table shows."""
    from convnet import optim, schedules

    monkeypatch.setattr(optim, "RULE", optim.RULE.replace(default="adam", help=optim.RULE.help))
    monkeypatch.setattr(schedules, "TYPE", schedules.TYPE.replace(default="cosine", help=schedules.TYPE.help))
    table = config_tables.sections_table()
    assert "| `optim.rule` | `adam` | one of `sgd`, `sgd_momentum`," in table
    assert "| `schedule.type` | `cosine` | one of `constant`, `exponential`," in table
    resolved = validate_config(merged(solver={"num_epochs": 2}))
    assert resolved["optim"]["rule"] == "adam" and resolved["schedule"]["type"] == "cosine"


def test_config_errors_are_value_errors_naming_the_key():
    with pytest.raises(ValueError, match="'schedule.gamma' must be in"):
        make_schedule({"type": "step", "gamma": 2}, 0.1, 10)
    assert issubclass(ConfigError, ValueError)


def test_the_command_line_prints_one_line_and_no_traceback(tmp_path):
    """The real `python -m convnet.train` process: a schedule option out of range (which the schedule would first
    use after an epoch of training) exits 2 with the one line on stderr, before any data is loaded or any run
    directory is made."""
    import subprocess
    import sys

    path = write_config(tmp_path, merged(schedule={"type": "step", "step_size": 0}))
    result = subprocess.run([sys.executable, "-m", "convnet.train", str(path), "--output-dir", str(tmp_path / "runs")],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 2
    assert result.stderr == "error: config key 'schedule.step_size' must be >= 1, got 0\n"
    assert "loading data" not in result.stdout and not (tmp_path / "runs").exists()


def test_every_update_rule_declares_a_learning_rate():
    from convnet.optim import RULES

    assert all("learning_rate" in rule.options for rule in RULES.values())
