"""The checkpoint format: .npz files of arrays plus JSON metadata, written atomically.

A file is written to a temporary name in the same directory and renamed over the
target only once complete, so a crash or Ctrl-C mid-write never leaves a truncated
checkpoint behind, and the previous one stays intact. Temporaries left by a killed
write (``<name>.npz.<random>.tmp``) are removed by :func:`remove_stale_temporaries`.

A training checkpoint is written and restored from one list, :data:`FIELDS`: each field
says how to read it from a Solver and how to put it back, so adding a field there is
all it takes. The metadata lists every array the file holds, and a checkpoint missing
a field or an array (a parameter, a momentum buffer) is refused with a
:class:`CheckpointError` naming the file, never resumed with a part silently reset.

Numpy's global generator (``np.random``) is part of the state only for models without
an ``rng`` of their own (CS231n-style student models, which draw dropout masks from it):
restoring a convnet model's checkpoint leaves the caller's global generator as it was.

Both best.npz and checkpoint.npz also carry the solver's :class:`Inference` record, when it
has one: the resolved config (the model's arguments), the normalisation statistics and the
class names, so that a trained model predicts and is evaluated without its training data
(:func:`read_inference`). It is written alongside and never put back into a Solver; files
without it still resume, and :func:`read_inference` names what they lack.
"""

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from convnet.data.splits import STATISTICS
from convnet.schedules import SCHEDULES

META_KEY = "__meta__"
FORMAT = 3  # 2: the best state inside checkpoint.npz, every array listed in the metadata; 3: the seed too


class CheckpointError(ValueError):
    """A checkpoint file is damaged, incomplete or written for another model or data."""


# ----------------------------------------------------------------------
# files
# ----------------------------------------------------------------------


def save_arrays(path, arrays, meta=None):
    """Write {name: array} (and an optional JSON-serialisable ``meta`` dict) to ``path``, atomically."""
    payload = dict(arrays)
    if meta is not None:
        payload[META_KEY] = np.array(json.dumps(meta))

    def write(temporary):
        with open(temporary, "wb") as f:  # a file object: given a name, np.savez would append '.npz'
            np.savez(f, **payload)

    write_atomically(path, write)


def write_atomically(path, write):
    """Call ``write(temporary_path)`` for a file beside ``path``, then rename it over ``path``.

    A crash, kill or Ctrl-C mid-write leaves the previous file intact (and perhaps a
    ``<name>.<random>.tmp`` for :func:`remove_stale_temporaries`). An OSError (a full disk,
    say) is raised again naming ``path``, which a write to an open file does not.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        handle = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(handle)  # on disk before the rename makes it the file
        finally:
            os.close(handle)
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, f"could not write {path} ({exc.strerror or exc}); the file that was there, "
                                     "if any, is intact") from exc
        raise


# What write_atomically leaves when killed, for the files a run directory holds.
_TEMPORARIES = ("*.npz.*.tmp", "*.yaml.*.tmp", "*.json.*.tmp", "*.csv.*.tmp")


def remove_stale_temporaries(directory):
    """Delete the temporaries that killed writes left in ``directory``; returns them."""
    stale = sorted(path for pattern in _TEMPORARIES for path in Path(directory).glob(pattern))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load_arrays(path):
    """{name: array} from a file written by :func:`save_arrays` (metadata left out)."""
    arrays, _ = load_arrays_and_meta(path)
    return arrays


def load_arrays_and_meta(path):
    """({name: array}, meta dict or None). No pickles are ever loaded.

    A missing file raises FileNotFoundError; a truncated or foreign one CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    _check_is_an_archive(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        meta = arrays.pop(META_KEY, None)
        meta = json.loads(str(meta)) if meta is not None else None
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is damaged or not a convnet .npz file ({type(exc).__name__}: {exc})") from exc
    if meta is not None and not isinstance(meta, dict):
        raise CheckpointError(f"{path} is damaged: its metadata is not a mapping")
    return arrays, meta


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


def _check_is_an_archive(path):
    """Refuse what np.load would otherwise misread: a bare .npy array, a cut-off archive, or
    anything else, which np.load takes for a pickle (and then advises loading it unsafely)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or exc})") from exc
    if head == _NPY_MAGIC:
        raise CheckpointError(f"{path} is not a convnet .npz file: it holds a single .npy array")
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path} is damaged or not a convnet .npz file: it does not start like an .npz "
                              "(zip) archive")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is damaged: the .npz archive is incomplete (truncated?)")


# ----------------------------------------------------------------------
# model state (parameters + batch-norm running statistics)
# ----------------------------------------------------------------------


def live_model_arrays(model):
    """The model's own arrays (no copies), named as in a checkpoint: parameters 'param/<name>' and
    batch-norm statistics 'bn/<i>/<stat>' (those created so far). It needs only ``model.params`` and,
    for batch norm, CS231n's ``model.bn_params`` list of bn_param dicts."""
    state = {f"param/{name}": value for name, value in model.params.items()}
    for i, bn_param in enumerate(getattr(model, "bn_params", None) or []):
        for key in ("running_mean", "running_var"):
            if key in bn_param:
                state[f"bn/{i}/{key}"] = bn_param[key]
    return state


def model_state(model):
    """Copies of the model's parameters ('param/<name>') and batch-norm statistics ('bn/<i>/<stat>').

    The one implementation of a model's state (``Model.state`` calls it).
    """
    return {key: np.array(value, copy=True) for key, value in live_model_arrays(model).items()}


def load_model_state(model, state):
    """Put back what :func:`model_state` returned (``Model.load_state`` calls it).

    Names and shapes must fit the model, else ValueError naming the arrays, and nothing is
    changed. Parameters keep their dtype; statistics get the model's ``dtype`` when it has one.
    """
    params = {key[len("param/"):]: value for key, value in state.items() if key.startswith("param/")}
    missing, unexpected = sorted(set(model.params) - set(params)), sorted(set(params) - set(model.params))
    if missing or unexpected:
        parts = [f"it lacks {', '.join('param/' + name for name in missing)}" if missing else "",
                 f"it has no place for {', '.join('param/' + name for name in unexpected)}" if unexpected else ""]
        raise ValueError(f"state does not fit this model: {'; '.join(part for part in parts if part)}")
    for name, value in params.items():
        if value.shape != model.params[name].shape:
            raise ValueError(f"param/{name} has shape {value.shape} in the state but "
                             f"{model.params[name].shape} in the model")
    bn_params = getattr(model, "bn_params", None) or []
    for key in state:
        if key.startswith("bn/") and int(key.split("/")[1]) >= len(bn_params):
            raise ValueError(f"{key}: this model has only {len(bn_params)} batch-norm layers")
    for name, value in params.items():
        model.params[name] = np.array(value, dtype=model.params[name].dtype)
    for key, value in state.items():
        if key.startswith("bn/"):
            _, index, stat = key.split("/")
            bn_params[int(index)][stat] = np.array(value, dtype=getattr(model, "dtype", None))


def load_weights(model, path):
    """Load the parameters and batch-norm statistics stored at ``path`` into ``model``.

    Accepts best.npz, checkpoint.npz or a file from ``model.save``; raises CheckpointError
    naming the file when it is damaged or does not fit the model.
    """
    arrays, _ = load_arrays_and_meta(path)
    try:
        load_model_state(model, model_arrays(arrays))
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return model


# ----------------------------------------------------------------------
# training checkpoints: one list of fields
# ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One part of a training checkpoint.

    ``get(solver)`` returns a JSON value, or for ``arrays=True`` a {name: array} dict stored
    under ``<field name>/<name>``; ``put(solver, value)`` restores it.
    """

    name: str
    get: Callable
    put: Callable
    arrays: bool = False


def _attribute(name):
    return Field(name, lambda s: getattr(s, name), lambda s, value: setattr(s, name, value))


def _optimizer_arrays(solver):
    return {f"{name}/{key}": value for name, config in solver.optim_configs.items()
            for key, value in config.items() if isinstance(value, np.ndarray)}


def _put_optimizer_arrays(solver, arrays):
    for key, value in arrays.items():
        name, field = key.split("/", 1)
        solver.optim_configs[name][field] = value


def _optimizer_scalars(solver):
    return {name: {key: value for key, value in config.items() if not isinstance(value, np.ndarray)}
            for name, config in solver.optim_configs.items()}


def _put_optimizer_scalars(solver, scalars):
    """The checkpoint's scalar state (e.g. Adam's step count t) under this solver's hyperparameters:
    a resume may change momentum, betas, epsilon or weight decay; the learning rate is the
    schedule's, set before every update."""
    if set(scalars) != set(solver.model.params):
        raise ValueError(f"optimizer state for {sorted(scalars)} but the model has {sorted(solver.model.params)}")
    hyperparameters = {name: {key: value for key, value in config.items() if key != "learning_rate"}
                       for name, config in solver.optim_configs.items()}
    solver.optim_configs = {name: {**values, **hyperparameters[name]} for name, values in scalars.items()}


def _put_model_rng(solver, state):
    if state is not None and getattr(solver.model, "rng", None) is not None:
        solver.model.rng.bit_generator.state = state


def _put_solver_rng(solver, state):
    solver.rng.bit_generator.state = state


def _draws_from_numpy_global_rng(model):
    """CS231n-style (student) models have no ``rng`` of their own and draw dropout masks from
    numpy's global generator; convnet's models draw only from ``model.rng``."""
    return getattr(model, "rng", None) is None


def _numpy_global_rng(solver):
    if not _draws_from_numpy_global_rng(solver.model):
        return None
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return [name, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)]


def _put_numpy_global_rng(solver, state):
    """Only for a model that draws from it: resuming must not reseed the caller's (a notebook's) generator."""
    if state is None or not _draws_from_numpy_global_rng(solver.model):
        return
    name, keys, position, has_gauss, cached_gaussian = state
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))


def _put_epoch_order(solver, arrays):
    solver.epoch_order = arrays.get("order")


def _put_best(solver, arrays):
    solver.best_state = dict(arrays) or None


def _lookahead_average(solver):
    lookahead = getattr(solver, "lookahead", None)
    return {} if lookahead is None or lookahead.average is None else lookahead.average


def _put_lookahead_average(solver, arrays):
    """The lookahead's average; a checkpoint with one for a solver without lookahead (or the reverse,
    past the first step) does not fit: the run would silently change."""
    lookahead = getattr(solver, "lookahead", None)
    if lookahead is None:
        if arrays:
            raise ValueError("it holds a lookahead average, but this solver has no lookahead")
        return
    if not arrays and solver.iteration > 0:
        raise ValueError("it holds no lookahead average, but this solver has lookahead")
    lookahead.average = {key: np.array(value, copy=True) for key, value in arrays.items()} or None


# Order matters on restore: the optimizer's scalars make the per-parameter dicts that
# its arrays are then put into.
FIELDS = [
    Field("model", lambda s: model_state(s.model), lambda s, state: load_model_state(s.model, state), arrays=True),
    Field("optim_scalars", _optimizer_scalars, _put_optimizer_scalars),
    Field("optim", _optimizer_arrays, _put_optimizer_arrays, arrays=True),
    Field("epoch_order", lambda s: {} if s.epoch_order is None else {"order": s.epoch_order}, _put_epoch_order,
          arrays=True),
    Field("best", lambda s: s.best_state or {}, _put_best, arrays=True),
    Field("solver_rng", lambda s: s.rng.bit_generator.state, _put_solver_rng),
    Field("model_rng", lambda s: s.model.rng.bit_generator.state if getattr(s.model, "rng", None) is not None
          else None, _put_model_rng),
    # Saved and restored only for models without their own rng (None otherwise).
    Field("numpy_global_rng", _numpy_global_rng, _put_numpy_global_rng),
    *(_attribute(name) for name in (
        "epoch", "iteration", "batch_in_epoch", "loss_history", "lr_history", "train_acc_history",
        "val_acc_history", "epoch_seconds", "train_seconds", "best_score", "best_val_acc", "best_epoch",
        "epoch_train_seconds", "epoch_images")),
    # After the attributes: whether a missing average is an error depends on the iteration.
    Field("lookahead", _lookahead_average, _put_lookahead_average, arrays=True),
]

# Written alongside, checked on restore, never put back: what the checkpoint was made for.
# The seed is here because a resumed run continues the checkpoint's generators: another seed
# could not take effect, so it is refused rather than recorded in a config it did not shape.
_REQUIRED = object()  # the default of an entry every format 3 checkpoint holds
_UNCHECKED = object()  # the default of one added later, whose value in an older checkpoint is unknown


@dataclass(frozen=True)
class Requirement:
    """One entry of a checkpoint's compatibility metadata: what a resume must keep.

    value: solver -> JSON value. key: the config key a refusal names (None: _check_compatible words
    its own refusal). why: the reason a change is refused. default: the value of an older checkpoint
    without the entry (_UNCHECKED: unknown, so not checked; _REQUIRED: none may lack it).
    """

    name: str
    value: Callable
    key: str = None
    why: str = ""
    default: object = _REQUIRED


def _horizon(solver):
    """num_epochs when the trajectory depends on the length of the whole run (a lookahead, whose
    decay follows step / total_steps, or a schedule of the fraction of training), else None: then a
    finished run may be extended."""
    schedule = getattr(solver, "schedule_spec", None) or {"type": "constant"}
    depends = getattr(solver, "lookahead", None) is not None or SCHEDULES[schedule["type"]].follows_num_epochs
    return solver.num_epochs if depends else None


def _lookahead_options(solver):
    lookahead = getattr(solver, "lookahead", None)
    return None if lookahead is None else {"every": lookahead.every, "decay": lookahead.decay,
                                           "power": lookahead.power}


def _selection_tta(solver):
    """The TTA of the val accuracy that picks the 'best' state, else None. TTA changes no step, but
    the epochs so far were compared with the first run's, so only a run that keeps its final state
    (or picks by train accuracy, measured without TTA) may change it."""
    picks = getattr(solver, "result", "best") == "best" and getattr(solver, "has_validation", True)
    return getattr(solver, "tta", None) if picks else None


_COMPATIBILITY = [
    Requirement("num_train", lambda solver: len(solver.X_train)),
    Requirement("batch_size", lambda solver: solver.batch_size),
    Requirement("update_rule", lambda solver: solver.update_rule_name),
    Requirement("seed", lambda solver: solver.seed),
    Requirement("result", lambda solver: getattr(solver, "result", "best"), "solver.result",
                "the state it kept as the result was chosen by the first", default="best"),
    Requirement("lookahead", _lookahead_options, "solver.lookahead",
                "its average was made with the first's every, decay and ramp", default=_UNCHECKED),
    Requirement("groups", lambda solver: getattr(solver, "groups", []), "optim.groups",
                "the steps so far gave the parameters the first's learning rates, decays and freezing",
                default=_UNCHECKED),
    Requirement("schedule", lambda solver: getattr(solver, "schedule_spec", None), "schedule",
                "the steps so far followed the first's learning rates", default=_UNCHECKED),
    Requirement("horizon", _horizon, "solver.num_epochs",
                "the lookahead or the schedule follows the length of the whole run (null: it does not, "
                "so the run may be extended)", default=_UNCHECKED),
    Requirement("selection_tta", _selection_tta, "solver.tta",
                "the val accuracies that choose the best state were measured with the first (null: no val "
                "accuracy chooses it)", default=_UNCHECKED),
]


def _plain(value):
    """``value`` as it reads back from a checkpoint's JSON metadata (tuples as lists)."""
    return json.loads(json.dumps(value))


# The model's state keeps its own 'param/...' and 'bn/...' names, so model.load reads a checkpoint too;
# every other array field is stored under '<field>/'.
_MODEL_PREFIXES = ("param/", "bn/")


def _array_key(field, name):
    return name if field == "model" else f"{field}/{name}"


def model_arrays(arrays):
    """The model's state (parameters and batch-norm statistics) among the arrays of a weights file."""
    return {key: value for key, value in arrays.items() if key.startswith(_MODEL_PREFIXES)}


def _field_arrays(field, arrays):
    if field == "model":
        return model_arrays(arrays)
    prefix = f"{field}/"
    return {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}


def solver_checkpoint(solver):
    """(arrays, meta): everything the Solver needs to continue exactly, from :data:`FIELDS`."""
    arrays, meta = {}, {"format": FORMAT, **{entry.name: entry.value(solver) for entry in _COMPATIBILITY}}
    for field in FIELDS:
        value = field.get(solver)
        if field.arrays:
            arrays.update({_array_key(field.name, name): array for name, array in value.items()})
        else:
            meta[field.name] = value
    meta["arrays"] = sorted(arrays)
    return with_inference(arrays, meta, getattr(solver, "inference", None))


def read_checkpoint(path):
    """(arrays, meta) of a training checkpoint, after checking it holds every field and array."""
    arrays, meta = load_arrays_and_meta(path)
    if meta is None or "format" not in meta:
        raise CheckpointError(f"{path} is not a convnet training checkpoint: it has no training metadata "
                              "(best.npz and model.save files hold weights only; resume from checkpoint.npz)")
    if meta["format"] != FORMAT:
        raise CheckpointError(f"{path} is a format {meta['format']} checkpoint; this convnet reads format {FORMAT}")
    required = ["arrays", *(entry.name for entry in _COMPATIBILITY if entry.default is _REQUIRED)]
    missing = [name for name in required if name not in meta]
    missing += [field.name for field in FIELDS if not field.arrays and field.name not in meta]
    if missing:
        raise CheckpointError(f"{path} is incomplete: its metadata lacks {', '.join(missing)}")
    absent = sorted(set(meta["arrays"]) - set(arrays))
    if absent:
        raise CheckpointError(f"{path} is incomplete: it lacks the array(s) {', '.join(absent)}")
    return arrays, meta


def restore_solver(solver, path, contents=None):
    """Put the checkpoint at ``path`` into ``solver`` (same model and data); raises CheckpointError.

    ``contents``: what :func:`read_checkpoint` returned for ``path``, when the caller has read it already.
    """
    arrays, meta = read_checkpoint(path) if contents is None else contents
    _check_compatible(solver, path, meta)
    for field in FIELDS:
        value = _field_arrays(field.name, arrays) if field.arrays else meta[field.name]
        try:
            field.put(solver, value)
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path} does not fit this run ({field.name}): {exc}") from exc
    return meta


def _shown(value):
    """A recorded value as a config spells it (null, not None)."""
    return "null" if value is None else repr(value)


def _check_compatible(solver, path, meta):
    """CheckpointError unless the checkpoint was written for this solver's data, batch size,
    update rule and seed (when it has one), with every other entry of _COMPATIBILITY the same,
    and has not trained past its num_epochs."""
    if meta["num_train"] != len(solver.X_train) or meta["batch_size"] != solver.batch_size:
        raise CheckpointError(
            f"{path} was written for {meta['num_train']} training images in batches of {meta['batch_size']}, "
            f"but this solver has {len(solver.X_train)} in batches of {solver.batch_size}")
    if meta["update_rule"] != solver.update_rule_name:
        raise CheckpointError(f"{path} was written with the {meta['update_rule']} update rule, but this solver uses "
                              f"{solver.update_rule_name}: the optimizer state fits only the first")
    if solver.seed is not None and meta["seed"] != solver.seed:  # an unseeded solver takes the checkpoint's
        raise CheckpointError(f"{path} was written by a run seeded with {meta['seed']}, but this solver's seed is "
                              f"{solver.seed}: a resume continues the checkpoint's random generators, so the seed "
                              "cannot change")
    for entry in _COMPATIBILITY:
        if entry.key is None:
            continue
        recorded, current = meta.get(entry.name, entry.default), _plain(entry.value(solver))
        if recorded is not _UNCHECKED and recorded != current:
            raise CheckpointError(f"{path} was written by a run with {entry.key} {_shown(recorded)}, but this "
                                  f"solver's is {_shown(current)}: {entry.why}")
    total = getattr(solver, "total_iterations", solver.num_epochs * solver.iterations_per_epoch)
    ended_partial = meta["iteration"] != meta["epoch"] * solver.iterations_per_epoch + meta["batch_in_epoch"]
    if ended_partial and meta["iteration"] != total:  # epochs after a partial one would not line up
        raise CheckpointError(f"{path} is the end of a run whose last epoch was partial (fractional num_epochs, "
                              f"{meta['iteration']} steps); it cannot be continued to {total} steps")
    if meta["iteration"] > total:
        raise CheckpointError(f"{path} has already completed {meta['epoch']} epochs, more than this solver's "
                              f"num_epochs ({solver.num_epochs:g}): {meta['iteration']} steps, this run makes {total}")


# ----------------------------------------------------------------------
# the inference record: what a trained model needs to predict
# ----------------------------------------------------------------------

INFERENCE_KEY = "inference"  # the metadata entry; its arrays are stored under 'inference/'


class MissingInferenceRecord(CheckpointError):
    """A weights file without the inference record (written by an older convnet, or by model.save)."""


@dataclass(frozen=True)
class Inference:
    """What a trained model needs to predict, written into best.npz and checkpoint.npz.

    config: the resolved experiment config (the model's arguments in config['model'], the
    seed, where the data came from); normalization: {'normalization': 'mean_image' |
    'per_channel' | None, 'mean', 'std'} as :func:`convnet.data.normalize_images` takes it
    (mean (C, H, W) or (C, 1, 1), std (C, 1, 1)); class_names: one name per model output;
    image_shape: (C, H, W) of the images the model was trained on.
    """

    config: dict
    normalization: dict
    class_names: list
    image_shape: tuple

    @classmethod
    def from_run(cls, config, splits):
        """The record of a run: its resolved config and the statistics and class names of its splits."""
        normalization = {key: splits[key] for key in ("normalization", "mean", "std") if key in splits}
        num_classes = int(config["model"].get("num_classes", len(splits.get("class_names", ()))))
        names = list(splits.get("class_names", ()))
        if len(names) != num_classes:  # a model with another number of outputs than the data's classes
            names = [str(index) for index in range(num_classes)]
        return cls(json.loads(json.dumps(config)), normalization, names, tuple(splits["X_train"].shape[1:]))

    def payload(self):
        """(arrays, meta entry) as stored in a checkpoint."""
        arrays = {f"{INFERENCE_KEY}/{key}": np.asarray(value) for key, value in self.normalization.items()
                  if key != "normalization"}
        meta = {"config": self.config, "normalization": self.normalization["normalization"],
                "class_names": list(self.class_names), "image_shape": list(self.image_shape)}
        return arrays, meta


_INFERENCE_ENTRIES = ("config", "normalization", "class_names", "image_shape")


def with_inference(arrays, meta, inference):
    """``arrays`` and ``meta`` with ``inference`` (an :class:`Inference`, or None: unchanged) added."""
    if inference is None:
        return arrays, meta
    extra, entry = inference.payload()
    meta = {**meta, INFERENCE_KEY: entry}
    if "arrays" in meta:
        meta["arrays"] = sorted({*meta["arrays"], *extra})
    return {**arrays, **extra}, meta


def read_inference(path):
    """(model state {'param/...', 'bn/...': array}, :class:`Inference`) of a weights file.

    Raises MissingInferenceRecord naming what the file lacks when it holds weights only,
    CheckpointError when it is damaged, FileNotFoundError when it is not there.
    """
    arrays, meta = load_arrays_and_meta(path)
    state = _field_arrays("model", arrays)
    if not state:
        raise CheckpointError(f"{path} holds no model parameters: it is not a convnet weights file")
    entry = (meta or {}).get(INFERENCE_KEY)
    if not isinstance(entry, dict):
        raise MissingInferenceRecord(
            f"{path} holds weights only: it lacks the model's arguments (the resolved config), the normalisation "
            "statistics and the class names (it was written before checkpoints carried them, or by model.save)")
    missing = [name for name in _INFERENCE_ENTRIES if name not in entry]
    normalization = {"normalization": entry.get("normalization")}
    for key in STATISTICS.get(normalization["normalization"], ()):
        if f"{INFERENCE_KEY}/{key}" in arrays:
            normalization[key] = arrays[f"{INFERENCE_KEY}/{key}"]
        else:
            missing.append(f"the array {INFERENCE_KEY}/{key}")
    if missing:
        raise CheckpointError(f"{path} has an incomplete inference record: it lacks {', '.join(missing)}")
    return state, Inference(entry["config"], normalization, list(entry["class_names"]), tuple(entry["image_shape"]))


def best_file(solver):
    """(arrays, meta) of best.npz: the best state, which epoch it is, and the solver's inference record."""
    meta = {"epoch": solver.best_epoch, "val_acc": solver.best_val_acc, "selected_by": solver.best_selected_by}
    return with_inference(solver.best_state, meta, getattr(solver, "inference", None))
