"""Turn a resolved experiment config into data, a model, a Solver and a run directory.

Data flows one way: config -> data -> model -> solver -> run directory. A run directory
``<output.dir>/<name>/<timestamp>/`` holds config.yaml (resolved), metrics.csv (a row every
``print_every`` iterations and one per epoch), checkpoint.npz and best.npz, summary.json and
the PNG plots (loss.png, accuracy.png, filters.png).
"""

import contextlib
import functools
import json
import platform
import time
from datetime import datetime
from pathlib import Path

import numpy as np

import convnet
from convnet import data as cifar
from convnet.augment import augment_batch
from convnet.callbacks import MetricsLog
from convnet.checkpoint import Inference, read_checkpoint, remove_stale_temporaries, write_atomically
from convnet.config import dump_config
from convnet.inference import model_from_config
from convnet.solver import Solver

try:
    import fcntl
except ImportError:  # not POSIX (Windows): run directories are not locked there
    fcntl = None

LOCK_FILE = ".lock"


def build_data(config):
    """The splits dict (X_train, y_train, X_val, y_val, X_test, y_test, ...) the config asks for."""
    d = config["data"]
    dtype = np.dtype(config["model"]["dtype"])
    options = dict(num_training=d["num_training"], num_validation=d["num_validation"], num_test=d["num_test"],
                   normalization=d["normalization"], dtype=dtype)
    if d["source"] == "sample":
        return cifar.get_sample_data(**options)
    if d["download"]:
        cifar.download_cifar10(d["root"])
    batches_dir = cifar.find_batches_dir(d["root"])
    return cifar.prepare_splits(*cifar.load_cifar10(batches_dir), source=batches_dir, **options)


def build_model(config):
    """The model of config['model'], seeded with the experiment seed."""
    model = model_from_config(config["model"], config["seed"])
    model.draw_new_dropout_masks()  # a seed fixes FullyConnectedNet's mask (for gradient checks); training wants new ones
    return model


def build_augment(config):
    """A function (X_batch, rng, indices, epoch) -> X_batch, or None when the config asks for no augmentation.
    The experiment seed picks the alternating flip's per-image bits."""
    options = config["data"]["augment"]
    if not options or not (options["crop_padding"] or options["flip"] or options["cutout_size"]):
        return None
    return functools.partial(augment_batch, **options, seed=config["seed"])


def create_run_dir(config):
    """A fresh <output.dir>/<name>/<YYYYmmdd-HHMMSS>[-k]/ directory."""
    parent = Path(config["output"]["dir"]) / config["name"]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        run_dir = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a new run directory under {parent}")


class RunDirectoryInUse(RuntimeError):
    """Another process holds the run directory's lock: it is training there now."""


@contextlib.contextmanager
def lock_run_dir(run_dir):
    """Hold an exclusive lock on ``run_dir/.lock`` for the ``with`` block, else RunDirectoryInUse.

    Two runs in one directory would overwrite each other's checkpoints. The lock is an
    fcntl.flock, which the kernel releases when the process ends, however it ends, so a
    run killed with SIGKILL leaves no stale lock; the empty .lock file may stay.
    """
    if fcntl is None:
        yield
        return
    with open(Path(run_dir) / LOCK_FILE, "a") as handle:  # "a": create it, never truncate
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirectoryInUse(f"{run_dir} is in use: another training run holds its lock "
                                    f"({Path(run_dir) / LOCK_FILE}); wait for it to end, or stop it") from None
        yield  # closing the file releases the lock


def clean_unresumable_run_dir(run_dir):
    """Remove the temporaries that killed writes left in a run directory with no checkpoint to
    resume (a run killed in its first epoch); returns them. RunDirectoryInUse when a run holds
    it (then it is still in its first epoch, and its temporaries are live writes)."""
    with lock_run_dir(run_dir):
        return remove_stale_temporaries(run_dir)


def build_solver(config, model, splits, run_dir=None, callbacks=(), progress=True, verbose=True, communicator=None):
    s, o = config["solver"], config["optim"]
    optim_config = {key: value for key, value in o.items() if key not in ("rule", "groups")}
    return Solver(
        model, splits, update_rule=o["rule"], optim_config=optim_config, batch_size=s["batch_size"],
        num_epochs=s["num_epochs"], num_train_samples=s["num_train_samples"], num_val_samples=s["num_val_samples"],
        print_every=s["print_every"], verbose=verbose, schedule=config["schedule"], seed=config["seed"],
        augment=build_augment(config), callbacks=callbacks, eval_batch_size=s["eval_batch_size"],
        checkpoint_dir=run_dir if (run_dir is not None and config["output"]["checkpoint"]) else None,
        progress=progress, inference=Inference.from_run(config, splits), groups=o.get("groups"),
        result=s["result"], lookahead=s["lookahead"], tta=s["tta"], communicator=communicator,
    )


def write_plots(run_dir, solver, model):
    # Imported here, not at start-up: matplotlib is most of convnet.train's import time, and
    # a run that stops early (bad config, Ctrl-C, --dry-run) never plots.
    from convnet import plots

    plots.plot_loss(solver.loss_history, solver.iterations_per_epoch, run_dir / "loss.png")
    plots.plot_accuracy(solver.train_acc_history, solver.val_acc_history, run_dir / "accuracy.png")
    first = next((value for value in model.params.values() if value.ndim == 4), None)
    if first is not None:
        plots.plot_filters(first, run_dir / "filters.png")


def summarize(config, solver, splits, status, wall_seconds, test_acc):
    num_train = len(solver.X_train)
    full_epochs, steps = divmod(solver.iteration, solver.iterations_per_epoch)  # the last epoch may be partial
    trained_images = full_epochs * num_train + min(steps * solver.batch_size, num_train)
    return {
        "name": config["name"],
        "status": status,
        "stopped_by": solver.stop_signal.name if solver.interrupted and solver.stop_signal is not None else None,
        "model": config["model"]["type"],
        "parameters": solver.model.num_parameters(),
        "data": {"source": config["data"]["source"], "train": len(splits["X_train"]), "val": len(splits["X_val"]),
                 "test": len(splits["X_test"])},
        "epochs": solver.epoch,
        "iterations": solver.iteration,
        "best_epoch": solver.best_epoch,
        "best_selected_by": solver.best_selected_by,
        "final_train_acc": solver.train_acc_history[-1] if solver.train_acc_history else None,
        "best_val_acc": solver.best_val_acc,
        "test_acc": test_acc,
        "wall_seconds": round(wall_seconds, 2),
        "train_seconds": round(solver.train_seconds, 2),
        "images_per_second": round(trained_images / solver.train_seconds, 1) if solver.train_seconds else None,
        # The file holding the state reported here (None: none does, e.g. output.checkpoint is false).
        "checkpoint": _path_or_none(solver.checkpoint_of_this_state),
        "resumed_from": _path_or_none(solver.resumed_from),
        "threads": convnet.get_num_threads(),  # per rank
        "ranks": solver.communicator.size,  # data-parallel processes (convnet.distributed)
        "versions": {"convnet": convnet.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "finished": datetime.now().isoformat(timespec="seconds"),
    }


def _path_or_none(path):
    return str(path) if path is not None else None


class RunAborted(KeyboardInterrupt):
    """A Ctrl-C outside the training steps (loading the data, the test evaluation, the plots)
    or a second one; ``run_dir`` is the run directory, or None when none was made yet."""

    def __init__(self, run_dir):
        super().__init__(run_dir)
        self.run_dir = run_dir


def run(config, run_dir=None, resume=False, progress=True, verbose=True, say=print, callbacks=(), communicator=None):
    """Train (or resume, given the run_dir) as the config says; returns (summary dict, run_dir).

    Resuming checks the checkpoint (readable, complete, fits this config's model and data)
    before anything in the run directory is written, so a refused resume changes nothing.
    The run directory is locked (:func:`lock_run_dir`) from start to end: RunDirectoryInUse
    when another run holds it. Raises TrainingDiverged on a NaN/inf loss or parameters,
    CheckpointError on a damaged or mismatched checkpoint; a Ctrl-C or SIGTERM during training
    returns status 'interrupted' (summary 'stopped_by' names the signal), a Ctrl-C anywhere
    else (or a second one) raises RunAborted naming the run directory. ``callbacks`` are added
    to the Solver's, after the metrics log (a sweep trial's Tune reporter, see convnet.tune).
    ``communicator`` (convnet.distributed): with several ranks, every rank trains and only the
    root rank (``is_root``) makes, locks and writes the run directory.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else None
    writes = communicator is None or communicator.is_root  # the other ranks only read (a checkpoint to resume)
    try:
        with contextlib.ExitStack() as held:  # the run directory's lock, released however this ends
            if run_dir is not None:  # locked before anything in it is read or written
                if resume and not run_dir.is_dir():
                    raise FileNotFoundError(f"no run directory at {run_dir}")
                if writes:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    held.enter_context(lock_run_dir(run_dir))
            if config["threads"] is not None:
                convnet.set_num_threads(config["threads"])
            checkpoint = run_dir / "checkpoint.npz" if resume else None
            if resume:  # read once, now: a damaged file is refused before the data is loaded
                contents = read_checkpoint(checkpoint)
            say(f"loading data ({config['data']['source']})...")
            splits = build_data(config)
            say(f"data: {len(splits['X_train'])} train, {len(splits['X_val'])} val, "
                f"{len(splits['X_test'])} test images")
            model = build_model(config)
            if run_dir is None and writes:
                run_dir = create_run_dir(config)
                held.enter_context(lock_run_dir(run_dir))
            # MetricsLog rewrites metrics.csv and Checkpoint clears stale temporaries only when training starts.
            metrics = [MetricsLog(run_dir / "metrics.csv", config["solver"]["print_every"])] if writes else []
            solver = build_solver(config, model, splits, run_dir if writes else None, [*metrics, *callbacks],
                                  progress, verbose, communicator)
            if resume:
                solver.load_checkpoint(checkpoint, contents)
                say(f"resuming {run_dir} at epoch {solver.progress_epochs:.2f} (iteration {solver.iteration})")
            # Only now, the checks above passed; atomically, as a resume rewrites the one its run needs.
            if writes:
                write_atomically(run_dir / "config.yaml", lambda temporary: dump_config(config, temporary))
            say(f"model: {config['model']['type']} with {model.num_parameters():,} parameters, "
                f"{convnet.get_num_threads()} threads; run directory: {run_dir}")
            solver.train()
            status = "interrupted" if solver.interrupted else "completed"
            test_acc = None
            if not solver.interrupted and len(splits["X_test"]):
                test_acc = solver.check_accuracy(splits["X_test"], splits["y_test"])
            summary = summarize(config, solver, splits, status, time.perf_counter() - started, test_acc)
            text = json.dumps(summary, indent=2)
            if writes:
                write_atomically(run_dir / "summary.json", lambda temporary: Path(temporary).write_text(text))
            if writes and config["output"]["plots"] and solver.train_acc_history:
                write_plots(run_dir, solver, model)
    except KeyboardInterrupt as exc:
        raise RunAborted(run_dir) from exc
    return summary, run_dir
