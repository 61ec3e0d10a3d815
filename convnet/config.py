"""YAML experiment configs: the schema, validation with helpful errors, and overrides.

An experiment file has these sections (every key but ``name`` has a default)::

    name: quickstart            # runs go to <output.dir>/<name>/<timestamp>/
    seed: 0                     # one seed for initialisation, shuffling, augmentation, dropout
    threads: null               # kernels + BLAS threads (null: OMP_NUM_THREADS or all cores)
    data:    {source: sample|cifar10, root, download, num_training, num_validation,
              num_test, normalization: mean_image|per_channel|null,
              augment: {crop_padding, flip, cutout_size}}
    model:   {type: TwoLayerNet|FullyConnectedNet|ThreeLayerConvNet|ConvNet, ...its arguments}
    optim:   {rule: sgd|sgd_momentum|nesterov|rmsprop|adam|adamw, ...its hyperparameters}
    schedule: {type: constant|exponential|step|cosine|onecycle, ...its options}
    solver:  {batch_size, num_epochs, num_train_samples, num_val_samples, print_every,
              eval_batch_size}
    output:  {dir, checkpoint, plots}

:func:`load_config` validates everything before anything runs: an unknown key is named
with the closest valid one, a wrong type or value says what is allowed.
"""

import copy
import difflib
import inspect
from pathlib import Path
from typing import NamedTuple

import yaml

from convnet.data import NORMALIZATIONS
from convnet.models import MODEL_TYPES
from convnet.models.conv_net import normalize_spec
from convnet.optim import HYPERPARAMETERS, UPDATE_RULES
from convnet.schedules import SCHEDULE_OPTIONS

REQUIRED = object()
NONE = type(None)


class ConfigError(ValueError):
    """A config key, type or value is not allowed; the message names the key."""


class Option(NamedTuple):
    default: object
    types: tuple
    choices: tuple = None
    minimum: float = None
    help: str = ""


AUGMENT = {
    "crop_padding": Option(0, (int,), minimum=0, help="zero-pad by this many pixels, then crop randomly"),
    "flip": Option(False, (bool,), help="mirror half of the images left-right"),
    "cutout_size": Option(0, (int,), minimum=0, help="zero a random square of this size"),
}
DATA = {
    "source": Option("sample", (str,), choices=("sample", "cifar10"),
                     help="the sample bundled with convnet, or the official CIFAR-10"),
    "root": Option(None, (str, NONE), help="CIFAR-10 directory (default $CONVNET_DATA or ~/.cache/convnet)"),
    "download": Option(False, (bool,), help="download CIFAR-10 when it is missing"),
    "num_training": Option(None, (int, NONE), minimum=1, help="training images (null: all left after validation)"),
    "num_validation": Option(1000, (int,), minimum=0, help="validation images, taken after the training ones"),
    "num_test": Option(None, (int, NONE), minimum=0, help="test images (null: all)"),
    "normalization": Option("mean_image", (str, NONE), choices=NORMALIZATIONS),
    "augment": Option(None, (dict, NONE), help="per-batch augmentation (null: none)"),
}
SOLVER = {
    "batch_size": Option(100, (int,), minimum=1),
    "num_epochs": Option(10, (int,), minimum=1),
    "num_train_samples": Option(1000, (int, NONE), minimum=1, help="images for the per-epoch train accuracy"),
    "num_val_samples": Option(None, (int, NONE), minimum=1, help="validation images per check (null: all)"),
    "print_every": Option(100, (int,), minimum=1),
    "eval_batch_size": Option(256, (int,), minimum=1),
}
OUTPUT = {
    "dir": Option("runs", (str,), help="runs are written to <dir>/<name>/<timestamp>/"),
    "checkpoint": Option(True, (bool,), help="write checkpoint.npz and best.npz every epoch"),
    "plots": Option(True, (bool,), help="write PNG plots at the end"),
}
TOP = {
    "name": Option(REQUIRED, (str,)),
    "description": Option("", (str,)),
    "seed": Option(0, (int,)),
    "threads": Option(None, (int, NONE), minimum=1),
    "data": Option({}, (dict,)),
    "model": Option(REQUIRED, (dict,)),
    "optim": Option({}, (dict,)),
    "schedule": Option(None, (dict, str, NONE)),
    "solver": Option({}, (dict,)),
    "output": Option({}, (dict,)),
}
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true/false", str: "a string", dict: "a mapping",
              list: "a list", NONE: "null"}


def _suggest(key, allowed):
    match = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _unknown(where, key, allowed, context=""):
    """ConfigError for an unknown key; context says what decides the allowed keys, e.g. ' for adam'."""
    return ConfigError(f"config key '{where}{key}'{context}: unknown{_suggest(key, allowed)} "
                       f"(allowed: {', '.join(allowed)})")


def _check_value(path, value, option):
    """Return value if it fits option (ints are accepted where floats are), else raise ConfigError."""
    types = option.types
    if float in types and isinstance(value, str):
        # PyYAML follows YAML 1.1, which reads 3e-4 (no dot) as a string; accept it as the number meant.
        try:
            value = float(value)
        except ValueError:
            pass
    is_bool = isinstance(value, bool)
    fits = any(
        (t is float and isinstance(value, (int, float)) and not is_bool)
        or (t is int and isinstance(value, int) and not is_bool)
        or (t is bool and is_bool)
        or (t not in (int, float, bool) and isinstance(value, t))
        for t in types
    )
    if not fits:
        expected = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in types)
        raise ConfigError(f"config key '{path}' must be {expected}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise ConfigError(f"config key '{path}' must be one of {list(option.choices)}, got {value!r}"
                          f"{_suggest(value, [c for c in option.choices if c])}")
    if option.minimum is not None and value is not None and value < option.minimum:
        raise ConfigError(f"config key '{path}' must be >= {option.minimum}, got {value!r}")
    return float(value) if float in types and int not in types and value is not None else value


def _section(raw, schema, where):
    """Validate a mapping against a fixed schema and fill in the defaults."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{where.rstrip('.')}' must be a mapping, got {raw!r}")
    for key in raw:
        if key not in schema:
            raise _unknown(where, key, schema)
    resolved = {}
    for key, option in schema.items():
        if key not in raw:
            if option.default is REQUIRED:
                raise ConfigError(f"config key '{where}{key}' is required")
            resolved[key] = copy.deepcopy(option.default)
        else:
            resolved[key] = _check_value(f"{where}{key}", raw[key], option)
    return resolved


def _model_section(raw):
    """type + the model class's constructor arguments (the top-level seed seeds the model)."""
    model = dict(raw)
    kind = model.pop("type", None)
    if kind not in MODEL_TYPES:
        raise ConfigError(f"config key 'model.type' must be one of {list(MODEL_TYPES)}, got {kind!r}"
                          f"{_suggest(kind, MODEL_TYPES)}")
    parameters = inspect.signature(MODEL_TYPES[kind].__init__).parameters
    allowed = [name for name in parameters if name not in ("self", "seed")]
    for key in model:
        if key not in allowed:
            raise _unknown("model.", key, allowed, f" for {kind}")
    if model.setdefault("dtype", "float32") not in ("float32", "float64"):
        raise ConfigError(f"config key 'model.dtype' must be 'float32' or 'float64', got {model['dtype']!r}")
    for name in allowed:
        default = parameters[name].default
        if name not in model:
            if default is inspect.Parameter.empty:
                raise ConfigError(f"config key 'model.{name}' is required for {kind}")
            # tuples become lists so that the resolved config is plain YAML
            model[name] = list(default) if isinstance(default, tuple) else default
    if kind == "ConvNet" and model["layers"] is not None:
        try:
            normalize_spec(model["layers"], "model.layers")
        except ValueError as exc:
            raise ConfigError(f"config key {exc}") from exc
    return {"type": kind, **model}


def _optim_section(raw):
    optim = dict(raw)
    rule = optim.pop("rule", "sgd")
    if rule not in UPDATE_RULES:
        raise ConfigError(f"config key 'optim.rule' must be one of {list(UPDATE_RULES)}, got {rule!r}"
                          f"{_suggest(rule, UPDATE_RULES)}")
    allowed = HYPERPARAMETERS[rule]
    for key, value in optim.items():
        if key not in allowed:
            raise _unknown("optim.", key, allowed, f" for {rule}")
        optim[key] = _check_value(f"optim.{key}", value, Option(None, (float,), minimum=0))
    return {"rule": rule, **optim}


def _schedule_section(raw):
    if raw is None:
        return {"type": "constant"}
    schedule = {"type": raw} if isinstance(raw, str) else dict(raw)
    kind = schedule.get("type", "constant")
    if kind not in SCHEDULE_OPTIONS:
        raise ConfigError(f"config key 'schedule.type' must be one of {list(SCHEDULE_OPTIONS)}, got {kind!r}"
                          f"{_suggest(kind, SCHEDULE_OPTIONS)}")
    allowed = SCHEDULE_OPTIONS[kind]
    for key in schedule:
        if key != "type" and key not in allowed:
            raise _unknown("schedule.", key, ["type", *allowed], f" for {kind}")
    return {"type": kind, **{key: schedule.get(key, default) for key, default in allowed.items()}}


def validate_config(raw):
    """The resolved config (every default filled in) for a raw dict, or ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a YAML mapping of sections, got {type(raw).__name__}")
    config = _section(raw, TOP, "")
    config["data"] = _section(config["data"], DATA, "data.")
    if config["data"]["augment"] is not None:
        config["data"]["augment"] = _section(config["data"]["augment"], AUGMENT, "data.augment.")
    config["solver"] = _section(config["solver"], SOLVER, "solver.")
    config["output"] = _section(config["output"], OUTPUT, "output.")
    config["model"] = _model_section(config["model"])
    config["optim"] = _optim_section(config["optim"])
    config["schedule"] = _schedule_section(config["schedule"])
    if config["data"]["source"] == "sample" and config["data"]["download"]:
        raise ConfigError("config key 'data.download' only applies to data.source 'cifar10'")
    return config


def apply_override(raw, assignment):
    """Set ``KEY.PATH=VALUE`` (VALUE parsed as YAML) in the raw config dict, in place.

    Integer path parts index lists: ``model.layers.0.filters=16``.
    """
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.learning_rate=3e-4), got {assignment!r}")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"--set {assignment!r}: empty key in {path!r}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({exc})") from exc
    target = raw
    for depth, key in enumerate(keys[:-1]):
        if isinstance(target, list):
            target = target[_list_index(target, key, keys[: depth + 1])]
            continue
        if target.get(key) is None:
            target[key] = {}
        target = target[key]
        if not isinstance(target, (dict, list)):
            raise ConfigError(f"--set {assignment!r}: '{'.'.join(keys[: depth + 1])}' is not a section")
    if isinstance(target, list):
        target[_list_index(target, keys[-1], keys)] = value
    else:
        target[keys[-1]] = value
    return raw


def _list_index(items, key, path):
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"--set: '{'.'.join(path)}' must index the list (0..{len(items) - 1})")
    return int(key)


def load_config(path, overrides=()):
    """Read, override and validate an experiment file; returns the resolved config dict."""
    path = Path(path)
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a YAML mapping of sections, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate_config(raw)


def dump_config(config, path):
    """Write a resolved config as YAML (the run directory's config.yaml)."""
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
