"""YAML experiment configs: the schema, validation with helpful errors, and overrides.

An experiment file has these sections (every key but ``name`` has a default)::

    name: quickstart            # runs go to <output.dir>/<name>/<timestamp>/
    seed: 0                     # one seed for initialisation, shuffling, augmentation, dropout
    threads: null               # kernels + BLAS threads (null: OMP_NUM_THREADS or all cores)
    data:    {source: sample|cifar10, root, download, num_training, num_validation,
              num_test, normalization: mean_image|per_channel|null,
              augment: {crop_padding, flip, cutout_size}}
    model:   {type: TwoLayerNet|FullyConnectedNet|ThreeLayerConvNet|ConvNet, ...its OPTIONS}
    optim:   {rule: sgd|sgd_momentum|nesterov|rmsprop|adam|adamw, ...its hyperparameters}
    schedule: {type: constant|exponential|step|cosine|onecycle, ...its options}
    solver:  {batch_size, num_epochs, num_train_samples, num_val_samples, print_every,
              eval_batch_size}
    output:  {dir, checkpoint, plots}

:func:`load_config` validates everything before any data is read: an unknown key is named
with the closest valid one, a wrong type or value says what is allowed, a ConvNet's block
shapes are inferred, and image counts are checked against the data source. Every key is a
:class:`convnet.options.Option` declared once: the sections here, each model class's
``OPTIONS``, ``convnet.schedules.SCHEDULES`` and ``convnet.models.blocks.BLOCKS``; the
tables of docs/experiments.md are generated from them (:mod:`convnet.config_tables`).
"""

import os
from pathlib import Path

import numpy as np
import yaml

from convnet import optim, schedules
from convnet.data import IMAGE_SHAPE, NORMALIZATIONS, NUM_CLASSES
from convnet.models import MODEL_TYPES
from convnet.options import NONE, REQUIRED, ConfigError, Option, check, choose, resolve, unknown_key
from convnet.solver import OPTIONS as SOLVER_ARGUMENTS

__all__ = ["ConfigError", "apply_override", "dump_config", "load_config", "validate_config"]

COUNT = "[0, inf)"
POSITIVE = "[1, inf)"

AUGMENT = {
    "crop_padding": Option(0, int, range=COUNT, help="zero-pad by this many pixels, then crop randomly"),
    "flip": Option(False, bool, help="mirror half of the images left-right"),
    "cutout_size": Option(0, int, range=COUNT, help="zero a random square of this size"),
}
DATA = {
    "source": Option("sample", str, choices=("sample", "cifar10"),
                     help="`sample` is the CIFAR-10 sample bundled with convnet; `cifar10` is the official data"),
    "root": Option(None, (str, NONE),
                   help="the CIFAR-10 directory (`null`: `$CONVNET_DATA`, else `~/.cache/convnet`)"),
    "download": Option(False, bool, help="download CIFAR-10 (MD5-checked) if it is missing"),
    "num_training": Option(None, (int, NONE), range=POSITIVE,
                           help="the first N training images (`null`: all left after validation)"),
    "num_validation": Option(1000, int, range=COUNT, help="the images right after the training ones (CS231n's split)"),
    "num_test": Option(None, (int, NONE), range=COUNT, help="the first N test images (`null`: all)"),
    "normalization": Option("mean_image", (str, NONE), choices=NORMALIZATIONS,
                            help="`mean_image` subtracts the per-pixel training mean; `per_channel` subtracts the "
                                 "per-channel training mean and divides by the per-channel std; `null` does nothing"),
    "augment": Option(None, (dict, NONE), help="per-batch augmentation (`null`: none); keys below"),
}
#: (training, test) images of each data source, known before any image is read: the
#: bundled sample's counts (tests/test_config_validation.py checks them against the file)
#: and the official CIFAR-10's. A CIFAR-10 directory with other counts is found when loaded.
AVAILABLE_IMAGES = {"sample": (2700, 500), "cifar10": (50000, 10000)}
SOLVER = {
    **SOLVER_ARGUMENTS,  # the Solver's arguments; a config logs less often than CS231n's default prints
    "print_every": SOLVER_ARGUMENTS["print_every"].replace(
        default=100, help="log the loss every this many iterations (to `metrics.csv`; printed when there is "
                          "no progress bar)"),
}
OUTPUT = {
    "dir": Option("runs", str, help="where run directories go: `<dir>/<name>/<timestamp>/`"),
    "checkpoint": Option(True, bool, help="write `checkpoint.npz` and `best.npz` after every epoch"),
    "plots": Option(True, bool, help="write `loss.png`, `accuracy.png` and `filters.png` at the end"),
}
TOP = {
    "name": Option(REQUIRED, str, help="runs are written to `<output.dir>/<name>/<timestamp>/`"),
    "description": Option("", str, help="free text"),
    "seed": Option(0, int, range=COUNT, help="seeds initialisation, shuffling, augmentation, dropout and sub-sampling"),
    # bounded: the kernels take the count as a C int, and no machine runs more threads usefully
    "threads": Option(None, (int, NONE), range="[1, 1024]",
                      help="threads for the kernels and BLAS (`null`: `OMP_NUM_THREADS`, else all cores)"),
    "data": Option({}, dict),
    "model": Option(REQUIRED, dict, help="`type` and that class's options (below)"),
    "optim": Option({}, dict, help="`rule` and that rule's hyperparameters (below)"),
    "schedule": Option(None, (dict, str, NONE), help="`type` and that schedule's options (below)"),
    "solver": Option({}, dict),
    "output": Option({}, dict),
}
#: The config key model.type: which model class, by name.
MODEL_TYPE = Option(REQUIRED, str, choices=tuple(MODEL_TYPES), help="the model class; its options are below")


def kinds():
    """The sections whose keys depend on a kind named in them: {section: (the key naming it, its Option)}."""
    return {"model": ("type", MODEL_TYPE), "optim": ("rule", optim.RULE), "schedule": ("type", schedules.TYPE)}


#: Every model type's config also takes the floating-point type it computes in.
DTYPE = Option("float32", str, choices=("float32", "float64"), help="the floating-point type of the computation")


def model_options(kind):
    """The declared config options of model type ``kind``: its class's OPTIONS, then dtype."""
    return {**MODEL_TYPES[kind].OPTIONS, "dtype": DTYPE}


def _model_section(raw):
    """type + the options the model class declares (the top-level seed seeds the model)."""
    model = dict(raw)
    kind = model.pop("type", None)
    cls = choose("model.type", kind, MODEL_TYPES)
    resolved = resolve("model", model, model_options(kind), context=f" for {kind}")
    check_options = getattr(cls, "check_options", None)
    if check_options is not None:  # what one option alone cannot say, e.g. ConvNet's block shapes
        check_options(resolved, "model")
    return {"type": kind, **resolved}


def _optim_section(raw):
    section = dict(raw)
    rule = section.pop("rule", optim.RULE.default)
    declared = choose("optim.rule", rule, optim.RULES).options
    for key, value in section.items():
        if key not in declared:
            raise unknown_key(f"optim.{key}", key, list(declared), f" for {rule}")
        section[key] = check(f"optim.{key}", value, declared[key])
    return {"rule": rule, **section}  # only what the config sets: the rule fills in its declared defaults


def _check_data_counts(data):
    """Refuse more training/validation/test images than the source holds, before reading any."""
    train, test = AVAILABLE_IMAGES[data["source"]]
    where = "the bundled sample" if data["source"] == "sample" else "CIFAR-10"
    num_validation = data["num_validation"]
    if data["num_training"] is None:
        if num_validation >= train:
            raise ConfigError(f"config key 'data.num_validation' is {num_validation}, which leaves no training "
                              f"images: {where} holds {train}")
    elif data["num_training"] + num_validation > train:
        raise ConfigError(f"config key 'data.num_training' is {data['num_training']} (+ data.num_validation "
                          f"{num_validation}), but {where} holds only {train} training images")
    if data["num_test"] is not None and data["num_test"] > test:
        raise ConfigError(f"config key 'data.num_test' is {data['num_test']}, but {where} holds only {test} test images")


def _check_model_fits_data(model, source):
    """Refuse a model whose input or class count does not match the images and labels of the source."""
    input_dim = model.get("input_dim")
    expected = list(IMAGE_SHAPE) if isinstance(input_dim, list) else int(np.prod(IMAGE_SHAPE))
    if input_dim is not None and input_dim != expected:
        raise ConfigError(f"config key 'model.input_dim' is {input_dim}, but the images of data.source {source!r} "
                          f"are {tuple(IMAGE_SHAPE)}: use {expected}")
    if model.get("num_classes", NUM_CLASSES) < NUM_CLASSES:
        raise ConfigError(f"config key 'model.num_classes' is {model['num_classes']}, but data.source {source!r} "
                          f"has {NUM_CLASSES} classes")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping (PyYAML silently keeps the last,
    so a second ``solver:`` section would throw the first away)."""

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: its keys may be overridden
                continue
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: SafeLoader's own message names it
                continue
            if seen:
                where = key_node.start_mark.name  # the file, or '<unicode string>' for a --set value
                where = "the value" if where.startswith("<") else where
                lines = f"line {line}" if first_line[key] == line else f"lines {first_line[key]} and {line}"
                raise ConfigError(f"{where}: key {key!r} is written twice in one mapping ({lines}); keep one")
            first_line[key] = line
        return super().construct_mapping(node, deep)


def _yaml_one_line(exc):
    """PyYAML's message spans several lines, with the position on the last: one line."""
    return " ".join(str(exc).split())


def _check_name(name):
    """Refuse a name that is not one directory name: runs go to <output.dir>/<name>/<timestamp>/."""
    if name.strip() in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ConfigError(f"config key 'name' must be a plain directory name (no '/', not empty, '.' or '..'), "
                          f"got {name!r}")


def _physical_memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no check
        return None


def _check_model_fits_memory(model, solver, training_images):
    """Refuse a model whose weights, or whose activations for one batch, alone would not fit in this
    machine's memory: a typo such as hidden_dim: 1000000000 would otherwise fail with a MemoryError
    after the data is loaded. Both counts are lower bounds, so nothing that fits is refused."""
    memory = _physical_memory_bytes()
    if memory is None:
        return
    cls, itemsize = MODEL_TYPES[model["type"]], np.dtype(model["dtype"]).itemsize
    options = {key: value for key, value in model.items() if key != "type"}
    batch = min(solver["batch_size"], training_images)  # the Solver's batches hold at most every image
    for numbers, what in ((cls.weight_count(options), "weights"),
                          (cls.activation_count(options) * batch, f"activations for a batch of {batch} images")):
        if numbers * itemsize > memory:
            raise ConfigError(f"config key 'model' ({model['type']}) asks for {numbers:.3g} {what}, "
                              f"{numbers * itemsize / 2**30:,.0f} GiB in {model['dtype']}, more than this "
                              f"machine's {memory / 2**30:,.0f} GiB of memory")


def _check_output_dir(directory):
    """Refuse an output.dir that cannot be a directory because a path above it is a file."""
    if not directory.strip():
        raise ConfigError("config key 'output.dir' is empty; give a directory ('.' for the current one)")
    path = Path(directory)
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"config key 'output.dir' is {directory!r}, but {str(parent)!r} is a file, "
                                  "not a directory")
            return


def validate_config(raw):
    """The resolved config (every default filled in) for a raw dict, or ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a config must be a YAML mapping of sections, got {type(raw).__name__}")
    config = resolve("", raw, TOP)
    _check_name(config["name"])
    config["data"] = resolve("data", config["data"], DATA)
    if config["data"]["augment"] is not None:
        config["data"]["augment"] = resolve("data.augment", config["data"]["augment"], AUGMENT)
    config["solver"] = resolve("solver", config["solver"], SOLVER)
    config["output"] = resolve("output", config["output"], OUTPUT)
    config["model"] = _model_section(config["model"])
    config["optim"] = _optim_section(config["optim"])
    config["schedule"] = schedules.resolve_schedule(config["schedule"])
    schedules.check_schedule(config["schedule"], config["solver"]["num_epochs"])
    if config["data"]["source"] == "sample" and config["data"]["download"]:
        raise ConfigError("config key 'data.download' only applies to data.source 'cifar10'")
    _check_data_counts(config["data"])
    _check_model_fits_data(config["model"], config["data"]["source"])
    training_images = config["data"]["num_training"] or (AVAILABLE_IMAGES[config["data"]["source"]][0]
                                                         - config["data"]["num_validation"])
    _check_model_fits_memory(config["model"], config["solver"], training_images)
    _check_output_dir(config["output"]["dir"])
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
        value = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"--set {assignment!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML ({_yaml_one_line(exc)})") from None
    target = raw
    for depth, key in enumerate(keys[:-1]):
        here = ".".join(keys[: depth + 1])
        if isinstance(target, list):
            child = target[_list_index(target, key, keys[: depth + 1])]
        else:
            if target.get(key) is None:
                target[key] = {}
            child = target[key]
        if not isinstance(child, (dict, list)):
            hint = ""
            if isinstance(target, list) and isinstance(child, str):  # a block written by its type name alone
                hint = f"; write the whole item instead, e.g. --set {here}='{{type: {child}, {keys[-1]}: ...}}'"
            raise ConfigError(f"--set {assignment!r}: '{here}' is not a section (it is {child!r}){hint}")
        target = child
    if isinstance(target, list):
        target[_list_index(target, keys[-1], keys)] = value
    else:
        target[keys[-1]] = value
    return raw


def _list_index(items, key, path):
    if not key.isdigit() or int(key) >= len(items):
        raise ConfigError(f"--set: '{'.'.join(path)}' must index the list (0..{len(items) - 1})")
    return int(key)


def read_yaml(path, what="config file"):
    """Open, parse (a key written twice is refused) and return one YAML file's top-level mapping
    (an empty file is {}); ConfigError in one line naming ``what`` and the path otherwise."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; give a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (not UTF-8); give a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {_yaml_one_line(exc)}") from None
    except ConfigError as exc:  # a key written twice: the loader names the file and the lines
        raise ConfigError(f"{what} {exc}") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {path} must hold a YAML mapping, got {type(raw).__name__}")
    return raw


def load_config(path, overrides=()):
    """Read, override and validate an experiment file; returns the resolved config dict."""
    raw = read_yaml(path, "config file")
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate_config(raw)


def dump_config(config, path):
    """Write a resolved config as YAML (the run directory's config.yaml)."""
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
