"""Train a model from a YAML experiment file.

    python -m convnet.train experiments/quickstart.yaml
    python -m convnet.train experiments/cifar10_convnet.yaml --set optim.learning_rate=0.05 --set solver.num_epochs=5
    python -m convnet.train experiments/cifar10_convnet.yaml --dry-run
    python -m convnet.train --resume runs/cifar10_convnet/20261126-101500
    mpiexec -n 4 python -m convnet.train experiments/cifar10_convnet.yaml     # data-parallel, see docs/distributed.md
"""

import argparse
import sys
import time
import traceback
from pathlib import Path

from convnet import distributed, experiment
from convnet.checkpoint import CheckpointError
from convnet.config import ConfigError, load_config
from convnet.data import CorruptDataError, DownloadError
from convnet.distributed import DistributedError
from convnet.solver import TrainingDiverged
from convnet.threads import default_num_threads, set_num_threads

EXIT_ERROR, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143  # 128 + SIGINT, 128 + SIGTERM


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m convnet.train",
        description="Train a convnet model as a YAML experiment file describes, writing a run directory "
                    "<output.dir>/<name>/<timestamp>/ with config.yaml, metrics.csv, checkpoint.npz, best.npz, "
                    "summary.json and PNG plots.",
        epilog="Examples:\n"
               "  python -m convnet.train experiments/quickstart.yaml\n"
               "  python -m convnet.train experiments/cifar10_convnet.yaml --set optim.learning_rate=0.05\n"
               "  python -m convnet.train experiments/cifar10_convnet.yaml --dry-run\n"
               "  python -m convnet.train --resume runs/quickstart/20261126-101500\n"
               "  mpiexec -n 2 python -m convnet.train experiments/cifar10_convnet.yaml   (data-parallel ranks)\n"
               "The config schema is described in convnet/config.py and docs/experiments.md.\n"
               "Ctrl-C, or SIGTERM (what kill, job schedulers and launchers send), stops between two steps and\n"
               "saves a checkpoint to resume from exactly; a second one stops at once without saving.\n"
               "A run directory is locked while a run trains in it: a second run there is refused.\n"
               "Exit status: 0 done, 1 error (diverged, missing or damaged file, run directory in use),\n"
               "2 bad config, 130 interrupted (Ctrl-C), 143 stopped by SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", type=Path,
                        help="experiment YAML file (optional with --resume, which reuses the run's config.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.learning_rate=3e-4 (repeatable; "
                             "VALUE is YAML, list items by index: model.layers.0.filters=16)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from RUN_DIR/checkpoint.npz, as if never stopped")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the config, load the data, build the model, time a few steps; train nothing")
    parser.add_argument("--output-dir", metavar="DIR", help="write runs under DIR (overrides output.dir)")
    parser.add_argument("--threads", type=int, metavar="N", help="threads for kernels and BLAS (overrides threads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (print a line per epoch)")
    parser.add_argument("--distributed", choices=distributed.MODES, default="auto",
                        help="data-parallel training over MPI ranks: auto (default: when started by mpiexec), "
                             "mpi (always, mpi4py needed), off (one process, even under mpiexec)")
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = parser.parse_args(argv)
    if args.config is None and args.resume is None:
        parser.error("give a CONFIG file, or --resume RUN_DIR")
    return args


def resolve_config(args, clean=True):
    """The validated config: from CONFIG, or from RUN_DIR/config.yaml when resuming.

    ``clean``: remove the temporaries of a run directory that has no checkpoint (the root
    rank alone does, under MPI)."""
    overrides = list(args.overrides)
    if args.output_dir is not None:
        overrides.append(f"output.dir={args.output_dir}")
    if args.threads is not None:
        overrides.append(f"threads={args.threads}")
    if args.resume is not None:
        run_config = args.resume / "config.yaml"
        if not (args.resume / "checkpoint.npz").is_file():
            if run_config.is_file():  # a run directory whose run stopped during its first epoch
                stale = experiment.clean_unresumable_run_dir(args.resume) if clean else []
                removed = (f"; removed the {len(stale)} temporary file(s) its killed writes left "
                           f"({', '.join(path.name for path in stale)})") if stale else ""
                raise ConfigError(f"--resume {args.resume}: no checkpoint.npz there: the run stopped before its first "
                                  f"checkpoint; start it again with: python -m convnet.train {run_config}{removed}")
            raise ConfigError(f"--resume {args.resume}: no checkpoint.npz there (is it a run directory?)")
        if args.config is not None and args.config.resolve() != run_config.resolve():
            raise ConfigError("--resume reuses the run's own config.yaml; drop CONFIG (use --set to change values)")
        return load_config(run_config, overrides)
    return load_config(args.config, overrides)


def dry_run(config, say, communicator=None):
    """Everything but training: data, model, and the time of a few training steps."""
    splits = experiment.build_data(config)
    model = experiment.build_model(config)
    solver = experiment.build_solver(config, model, splits, progress=False, verbose=False, communicator=communicator)
    say(f"data: {len(splits['X_train'])} train, {len(splits['X_val'])} val, {len(splits['X_test'])} test images")
    say(model.describe() if hasattr(model, "describe") else f"{config['model']['type']}: "
        f"{model.num_parameters():,} parameters")
    steps = min(4, solver.iterations_per_epoch)
    solver.step()  # warm-up: first-call allocations
    started = time.perf_counter()
    for _ in range(steps - 1):
        solver.step()
    per_step = (time.perf_counter() - started) / max(1, steps - 1)
    epochs = config["solver"]["num_epochs"]
    say(f"{solver.iterations_per_epoch} iterations per epoch of {config['solver']['batch_size']} images; "
        f"about {per_step * 1e3:.0f} ms per step -> {per_step * solver.iterations_per_epoch / 60:.1f} min per epoch, "
        f"{per_step * solver.iterations_per_epoch * epochs / 60:.1f} min for {epochs} epochs (evaluation not counted)")
    say("dry run: config, data and model are fine; nothing was trained or written")


def resume_hint(run_dir):
    """'; ...resume with: ...' when ``run_dir`` holds a checkpoint, else ''."""
    checkpoint = run_dir / "checkpoint.npz" if run_dir is not None else None
    if checkpoint is None or not checkpoint.is_file():
        return ""
    return f"; the last checkpoint, {checkpoint}, resumes with: python -m convnet.train --resume {run_dir}"


def main(argv=None):
    args = parse_args(argv)
    try:
        communicator = distributed.communicator(args.distributed)
    except distributed.DistributedError as exc:
        if distributed.launch_rank() == 0:  # once, not once per process
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if communicator.size == 1:
        return train(args, communicator)
    try:
        return train(args, communicator)
    except BaseException:  # a bug on one rank: the others would wait for it in their next Allreduce
        traceback.print_exc()
        communicator.abort(EXIT_ERROR)
        return EXIT_ERROR


def fail(communicator, message, status, alone=False):
    """Print ``message`` (once: on the root rank) and return ``status``. ``alone``: a failure that
    may have happened on this rank only (a file it could not write, memory, a lock), which the
    other ranks would wait for: with several ranks it is printed with the rank and ends them all."""
    if alone and communicator.size > 1:
        print(f"{message} (rank {communicator.rank} of {communicator.size}; stopping every rank)", file=sys.stderr)
        sys.stderr.flush()
        communicator.abort(status)
        return status
    if communicator.is_root:
        print(message, file=sys.stderr)
    return status


def train(args, communicator):
    """The command for parsed ``args`` on one rank of ``communicator``; returns the exit status."""
    say = print if communicator.is_root and not args.quiet else (lambda *_: None)
    try:
        config = resolve_config(args, clean=communicator.is_root)
    except ConfigError as exc:
        return fail(communicator, f"error: {exc}", EXIT_CONFIG)
    except experiment.RunDirectoryInUse as exc:
        return fail(communicator, f"error: {exc}", EXIT_ERROR, alone=True)
    if communicator.local_size > 1 and config["threads"] is None:  # the ranks on a machine share its cores
        set_num_threads(default_num_threads(communicator.local_size))
    try:
        if args.dry_run:
            dry_run(config, say, communicator)
            return 0
        summary, run_dir = experiment.run(
            config, run_dir=args.resume, resume=args.resume is not None,
            progress=False if (args.no_progress or args.quiet) else None,  # None: a bar when on a terminal
            verbose=communicator.is_root and not args.quiet, say=say, communicator=communicator)
    except (TrainingDiverged, DistributedError) as exc:  # decided by every rank together
        what = "training diverged: " if isinstance(exc, TrainingDiverged) else ""
        return fail(communicator, f"error: {what}{exc}", EXIT_ERROR)
    except (CheckpointError, CorruptDataError) as exc:  # every rank reads the same file
        return fail(communicator, f"error: {exc}", EXIT_ERROR)
    except (FileNotFoundError, DownloadError, experiment.RunDirectoryInUse) as exc:
        return fail(communicator, f"error: {exc}", EXIT_ERROR, alone=True)
    except MemoryError:
        return fail(communicator, "error: out of memory; lower solver.batch_size or solver.eval_batch_size, use "
                    "fewer or narrower layers, or train on fewer images (data.num_training)", EXIT_ERROR, alone=True)
    except OSError as exc:  # a full disk or a directory that cannot be written: no traceback either
        return fail(communicator, f"error: {exc.strerror if exc.strerror and not exc.filename else exc}",
                    EXIT_ERROR, alone=True)
    except KeyboardInterrupt as exc:  # outside the training steps, or a second Ctrl-C: stopped at once
        return fail(communicator, "aborted; files already on disk were left as they were"
                    f"{resume_hint(getattr(exc, 'run_dir', None))}", EXIT_INTERRUPTED, alone=True)
    if not communicator.is_root:  # it stopped where the root did; the root reports (mpiexec exits with its status)
        return 0
    if summary["status"] == "interrupted":
        terminated = summary["stopped_by"] == "SIGTERM"
        stopped = "stopped by SIGTERM" if terminated else "interrupted"
        if config["output"]["checkpoint"]:
            print(f"{stopped}; checkpoint saved to {summary['checkpoint']}; resume with: "
                  f"python -m convnet.train --resume {run_dir}", file=sys.stderr)
        elif summary["resumed_from"] is not None:  # a resume with output.checkpoint false: the old one stays
            print(f"{stopped}; nothing was saved (output.checkpoint is false); the earlier checkpoint, "
                  f"{summary['resumed_from']}, resumes from where it was: python -m convnet.train --resume {run_dir}",
                  file=sys.stderr)
        else:
            print(f"{stopped}; nothing to resume from: output.checkpoint is false, so no checkpoint was written",
                  file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    test = "-" if summary["test_acc"] is None else f"{summary['test_acc']:.4f}"
    val = "-" if summary["best_val_acc"] is None else f"{summary['best_val_acc']:.4f}"
    which = (f"final state, epoch {summary['best_epoch']}" if summary["best_selected_by"] == "final"
             else f"best val {val} at epoch {summary['best_epoch']}")  # solver.result: final keeps the last
    print(f"{summary['name']}: test accuracy {test} ({which}), "
          f"{summary['wall_seconds'] / 60:.1f} min wall, {summary['images_per_second']} images/s training; "
          f"run directory {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
