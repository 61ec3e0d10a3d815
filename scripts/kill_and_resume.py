"""Interrupt real training processes at random moments, resume them, compare with an uninterrupted run.

    python scripts/kill_and_resume.py --signal INT --trials 6 --stops 3
    python scripts/kill_and_resume.py --signal TERM --trials 6
    python scripts/kill_and_resume.py --signal KILL --trials 6 --during-write

Each trial starts ``python -m convnet.train`` on a tiny config (bundled sample, 3 epochs,
a ConvNet with batch norm, dropout, augmentation, momentum) and sends the signal after a
random delay (``--during-write``: while a checkpoint file is being written, which is slowed
down for that); it resumes the run (or, with no checkpoint yet, starts it again) and stops
it again, ``--stops`` times, then lets it finish. It checks that nothing is left in
``*.tmp``, that best.npz holds the best epoch named in checkpoint.npz, and that every array
of checkpoint.npz and best.npz, metrics.csv (timings aside) and the summary's results equal
the uninterrupted run's. Prints one line per trial; exits 1 when a trial broke. Not a test: the moments are random.
"""

import argparse
import csv
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from convnet.checkpoint import load_arrays_and_meta

CONFIG = {
    "name": "tiny", "seed": 1,
    "data": {"source": "sample", "num_training": 480, "num_validation": 400, "num_test": 60,
             "normalization": "per_channel", "augment": {"flip": True, "crop_padding": 2}},
    "model": {"type": "ConvNet", "layers": [{"type": "conv_bn_relu", "filters": 8}, "pool",
                                            {"type": "dropout", "keep": 0.8}, "pool", "pool", "global_avgpool"]},
    "optim": {"rule": "sgd_momentum", "learning_rate": 0.05},
    "solver": {"batch_size": 16, "num_epochs": 3, "num_train_samples": 400, "print_every": 3},
}
RESULTS = ("status", "epochs", "iterations", "best_epoch", "best_val_acc", "final_train_acc", "test_acc")

# Run in the child with --during-write: every np.savez says so on stdout, then takes half a second.
SLOW_WRITES = """
import sys, time, runpy, numpy as np
savez = np.savez
def slow_savez(*args, **kwargs):
    print("writing", flush=True)
    savez(*args, **kwargs)
    time.sleep(0.5)
np.savez = slow_savez
sys.argv = ["convnet.train", *sys.argv[1:]]
runpy.run_module("convnet.train", run_name="__main__")
"""


def train_command(args, slow):
    return [sys.executable, "-c", SLOW_WRITES, *args] if slow else [sys.executable, "-m", "convnet.train", *args]


def run_dir_of(output):
    dirs = list((output / "tiny").iterdir()) if (output / "tiny").is_dir() else []
    return dirs[0] if dirs else None


def interrupted_run(command, sig, delay, on_write, write_number):
    """Start ``command``, deliver ``sig`` after ``delay`` s (or at its ``write_number``-th write); return the code."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if on_write:
        writes = 0
        for line in process.stdout:
            writes += line.strip() == "writing"
            if writes == write_number:
                time.sleep(random.uniform(0.0, 0.4))
                break
    else:
        time.sleep(delay)
    process.send_signal(sig)
    _, err = process.communicate()
    return process.returncode, err.strip().splitlines()[-1:] if err.strip() else []


def final_files(run_dir):
    return {name: load_arrays_and_meta(run_dir / name)[0] for name in ("checkpoint.npz", "best.npz")}


def metrics(run_dir):
    """metrics.csv without its timings."""
    with open(run_dir / "metrics.csv") as f:
        return [[row[key] for key in ("kind", "epoch", "iteration", "loss", "train_acc", "val_acc", "learning_rate")]
                for row in csv.DictReader(f)]


def compare(run_dir, reference):
    problems = []
    actual, expected = final_files(run_dir), final_files(reference)
    for name in expected:
        if sorted(actual[name]) != sorted(expected[name]):
            problems.append(f"{name}: arrays {sorted(set(actual[name]) ^ set(expected[name]))} differ in presence")
        differing = [key for key in expected[name] if key in actual[name]
                     and not np.array_equal(actual[name][key], expected[name][key])]
        if differing:
            problems.append(f"{name}: {len(differing)} arrays differ, e.g. {differing[:3]}")
    got, want = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    problems += [f"summary {key}: {got.get(key)} != {want[key]}" for key in RESULTS if got.get(key) != want[key]]
    if metrics(run_dir) != metrics(reference):
        problems.append("metrics.csv differs")
    _, checkpoint_meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    _, best_meta = load_arrays_and_meta(run_dir / "best.npz")
    if best_meta["epoch"] != checkpoint_meta["best_epoch"]:
        problems.append(f"best.npz holds epoch {best_meta['epoch']}, "
                        f"checkpoint.npz's best is {checkpoint_meta['best_epoch']}")
    return problems


def next_command(config_path, output):
    """Resume the run when it has a checkpoint; else start it afresh (removing a run killed too early)."""
    run_dir = run_dir_of(output)
    if run_dir is not None and (run_dir / "checkpoint.npz").is_file():
        return ["--resume", str(run_dir), "--quiet"], run_dir
    if run_dir is not None:
        shutil.rmtree(run_dir)
    return [str(config_path), "--output-dir", str(output), "--quiet"], None


def trial(work, config_path, reference, sig, duration, on_write, stops):
    """Stop the run ``stops`` times at random moments, then let it finish; returns (notes, problems)."""
    output, notes = work / "runs", []
    for _ in range(stops):
        args, run_dir = next_command(config_path, output)
        if run_dir is not None:
            _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
            left = sorted(path.name for path in run_dir.glob("*.tmp"))
            notes.append(f"resume from epoch {meta['epoch']} + {meta['batch_in_epoch']} batches"
                         + (f" (left: {left})" if left else ""))
        delay, write_number = random.uniform(0.3, duration), random.randint(1, 5)
        code, last_err = interrupted_run(train_command(args, on_write), sig, delay, on_write, write_number)
        notes.append(f"{signal.Signals(sig).name} at {f'write {write_number}' if on_write else f'{delay:.2f}s'}: "
                     f"exit {code} {last_err}")
    args, run_dir = next_command(config_path, output)
    notes.append("finish " + ("by resuming" if run_dir is not None else "from the start"))
    result = subprocess.run(train_command(args, False), capture_output=True, text=True)
    if result.returncode != 0:
        return notes, [f"the last run exited {result.returncode}: {result.stderr.strip()[-500:]}"]
    run_dir = run_dir_of(output)
    problems = compare(run_dir, reference)
    stale = list(run_dir.glob("*.tmp"))
    problems += [f"stale temporaries after the resume: {stale}"] if stale else []
    return notes, problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signal", choices=["INT", "TERM", "KILL"], default="INT")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--during-write", action="store_true", help="deliver the signal while a checkpoint is written")
    parser.add_argument("--stops", type=int, default=1, help="signals per trial (each resume is stopped too)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random moments")
    args = parser.parse_args()
    random.seed(args.seed)
    sig = signal.Signals[f"SIG{args.signal}"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config_path = tmp / "tiny.yaml"
        config_path.write_text(yaml.safe_dump(CONFIG))
        started = time.perf_counter()
        subprocess.run(train_command([str(config_path), "--output-dir", str(tmp / "reference"), "--quiet"], False),
                       check=True, capture_output=True)
        duration = time.perf_counter() - started
        reference = run_dir_of(tmp / "reference")
        print(f"uninterrupted run: {duration:.1f} s")
        broken = 0
        for number in range(args.trials):
            work = tmp / f"trial{number}"
            work.mkdir()
            notes, problems = trial(work, config_path, reference, sig, duration, args.during_write, args.stops)
            broken += bool(problems)
            print(f"trial {number}: {'BROKEN' if problems else 'ok'}; " + "; ".join(notes + problems), flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
