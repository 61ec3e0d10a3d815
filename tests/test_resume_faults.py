"""Faults at the command line: Ctrl-C in a run, damaged checkpoints, refused resumes,
cut-off metrics, stale temporaries, and evaluate's arguments."""

import csv
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from convnet import evaluate, experiment, train
from convnet.augment import augment_batch
from convnet.checkpoint import load_arrays, load_arrays_and_meta, save_arrays

from runs import TINY, only_run_dir, snapshot, write_config


def ctrl_c_at_augmentation(monkeypatch, call, signum=signal.SIGINT):
    """Make the run's augmentation send a real ``signum`` at the end of its ``call``-th batch."""
    calls = [0]

    def build_augment(config):
        options = config["data"]["augment"]

        def augment(X, rng):
            out = augment_batch(X, rng, **options)
            calls[0] += 1
            if calls[0] == call:
                os.kill(os.getpid(), signum)
            return out

        return augment

    monkeypatch.setattr(experiment, "build_augment", build_augment)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted two-epoch run directory (never modified: copy it)."""
    base = tmp_path_factory.mktemp("finished")
    assert train.main([str(write_config(base)), "--output-dir", str(base / "runs"), "--quiet"]) == 0
    return only_run_dir(base / "runs")


@pytest.fixture
def run_copy(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_ctrl_c_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys, finished):
    with monkeypatch.context() as patch:
        ctrl_c_at_augmentation(patch, 6)  # the second of epoch 2's four batches
        code = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == train.EXIT_INTERRUPTED
    run_dir = only_run_dir(tmp_path / "runs")
    err = capsys.readouterr().err
    assert f"checkpoint saved to {run_dir / 'checkpoint.npz'}" in err and f"--resume {run_dir}" in err
    _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    assert (meta["epoch"], meta["batch_in_epoch"]) == (1, 2)
    assert train.main(["--resume", str(run_dir), "--quiet"]) == 0
    expected, resumed = load_arrays(finished / "checkpoint.npz"), load_arrays(run_dir / "checkpoint.npz")
    assert sorted(resumed) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    with open(run_dir / "metrics.csv") as f, open(finished / "metrics.csv") as g:
        columns = ("kind", "epoch", "iteration", "loss", "train_acc", "val_acc", "learning_rate")
        assert [[r[c] for c in columns] for r in csv.DictReader(f)] == [[r[c] for c in columns]
                                                                       for r in csv.DictReader(g)]


def test_sigterm_mid_epoch_stops_like_ctrl_c_and_the_resume_equals_the_uninterrupted_run(
        tmp_path, monkeypatch, capsys, finished, sigterm_raises):
    with monkeypatch.context() as patch:
        ctrl_c_at_augmentation(patch, 6, signal.SIGTERM)  # the second of epoch 2's four batches
        code = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--no-progress"])
    assert code == train.EXIT_TERMINATED == 143
    run_dir = only_run_dir(tmp_path / "runs")
    captured = capsys.readouterr()
    assert "Interrupted by SIGTERM at epoch 1.50 (iteration 6), between two steps." in captured.out
    assert captured.err == (f"stopped by SIGTERM; checkpoint saved to {run_dir / 'checkpoint.npz'}; resume with: "
                            f"python -m convnet.train --resume {run_dir}\n")
    summary = yaml.safe_load((run_dir / "summary.json").read_text())
    assert (summary["status"], summary["stopped_by"]) == ("interrupted", "SIGTERM")
    assert train.main(["--resume", str(run_dir), "--quiet"]) == 0
    expected, resumed = load_arrays(finished / "checkpoint.npz"), load_arrays(run_dir / "checkpoint.npz")
    assert sorted(resumed) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_ctrl_c_without_checkpoints_does_not_offer_a_resume(tmp_path, monkeypatch, capsys):
    ctrl_c_at_augmentation(monkeypatch, 2)
    path = write_config(tmp_path, output={"checkpoint": False})
    assert train.main([str(path), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == train.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "checkpoint saved" not in err and "--resume" not in err
    assert "nothing to resume from: output.checkpoint is false" in err
    assert not list(only_run_dir(tmp_path / "runs").glob("*.npz"))


RESULTS = ("status", "epochs", "iterations", "best_epoch", "best_val_acc", "final_train_acc", "test_acc")


def test_ctrl_c_after_the_last_epoch_names_the_checkpoint_and_the_resume_finishes_the_run(
        tmp_path, monkeypatch, capsys, finished):
    write_plots = experiment.write_plots

    def ctrl_c_while_plotting(*args):
        os.kill(os.getpid(), signal.SIGINT)  # no Solver handler now: Python's KeyboardInterrupt
        write_plots(*args)

    with monkeypatch.context() as patch:
        patch.setattr(experiment, "write_plots", ctrl_c_while_plotting)
        code = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == train.EXIT_INTERRUPTED
    run_dir = only_run_dir(tmp_path / "runs")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aborted" in err
    checkpoint = run_dir / "checkpoint.npz"
    assert f"the last checkpoint, {checkpoint}, resumes with: python -m convnet.train --resume {run_dir}" in err
    assert train.main(["--resume", str(run_dir), "--quiet"]) == 0
    resumed, expected = (yaml.safe_load((d / "summary.json").read_text()) for d in (run_dir, finished))
    assert {key: resumed[key] for key in RESULTS} == {key: expected[key] for key in RESULTS}
    assert (run_dir / "loss.png").is_file()


def test_ctrl_c_while_loading_the_data_offers_no_resume(tmp_path, monkeypatch, capsys):
    def ctrl_c_while_loading(config):
        os.kill(os.getpid(), signal.SIGINT)
        return {}

    monkeypatch.setattr(experiment, "build_data", ctrl_c_while_loading)
    code = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == train.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "aborted; files already on disk were left as they were\n"
    assert not (tmp_path / "runs").exists()


def test_resuming_a_run_killed_before_its_first_checkpoint_says_how_to_start_it_again(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(tmp_path)
    (tmp_path / "tiny.yaml").rename(run_dir / "config.yaml")  # what a run killed in its first epoch leaves
    assert train.main(["--resume", str(run_dir), "--quiet"]) == train.EXIT_CONFIG
    assert capsys.readouterr().err == (f"error: --resume {run_dir}: no checkpoint.npz there: the run stopped before "
                                       f"its first checkpoint; start it again with: python -m convnet.train "
                                       f"{run_dir / 'config.yaml'}\n")
    assert train.main(["--resume", str(tmp_path / "elsewhere"), "--quiet"]) == train.EXIT_CONFIG
    assert "no checkpoint.npz there (is it a run directory?)" in capsys.readouterr().err


def test_resuming_a_run_killed_before_its_first_checkpoint_removes_the_temporaries_it_left(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(tmp_path)
    (tmp_path / "tiny.yaml").rename(run_dir / "config.yaml")
    (run_dir / "best.npz.k2j4x9.tmp").write_bytes(b"half a file")  # killed while writing its first best.npz
    assert train.main(["--resume", str(run_dir), "--quiet"]) == train.EXIT_CONFIG
    assert capsys.readouterr().err.endswith(f"start it again with: python -m convnet.train {run_dir / 'config.yaml'}; "
                                            "removed the 1 temporary file(s) its killed writes left "
                                            "(best.npz.k2j4x9.tmp)\n")
    assert sorted(path.name for path in run_dir.iterdir()) == [".lock", "config.yaml"]


def test_resuming_a_run_still_in_its_first_epoch_says_it_is_in_use_and_leaves_its_files(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(tmp_path)
    (tmp_path / "tiny.yaml").rename(run_dir / "config.yaml")
    (run_dir / "best.npz.k2j4x9.tmp").write_bytes(b"a write in progress")
    with experiment.lock_run_dir(run_dir):  # the run that is writing it
        assert train.main(["--resume", str(run_dir), "--quiet"]) == train.EXIT_ERROR
    assert capsys.readouterr().err.startswith(f"error: {run_dir} is in use: another training run holds its lock")
    assert (run_dir / "best.npz.k2j4x9.tmp").read_bytes() == b"a write in progress"


def test_a_full_disk_is_one_line_and_the_last_checkpoint_still_resumes(tmp_path, monkeypatch, capsys):
    real_savez, calls = np.savez, [0]

    def savez_on_a_full_disk(file, **arrays):
        calls[0] += 1
        if calls[0] == 3:  # the first write of epoch 2; epoch 1's best.npz and checkpoint.npz were written
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(file, **arrays)

    with monkeypatch.context() as patch:
        patch.setattr(np, "savez", savez_on_a_full_disk)
        code = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--quiet"])
    assert code == train.EXIT_ERROR
    run_dir = only_run_dir(tmp_path / "runs")
    assert re.fullmatch(f"error: could not write {re.escape(str(run_dir))}/(best|checkpoint).npz "
                        r"\(No space left on device\); the file that was there, if any, is intact\n",
                        capsys.readouterr().err)
    assert not list(run_dir.glob("*.tmp"))
    assert load_arrays_and_meta(run_dir / "checkpoint.npz")[1]["epoch"] == 1
    assert train.main(["--resume", str(run_dir), "--quiet"]) == 0


def test_ctrl_c_in_a_resume_without_checkpoints_does_not_claim_a_save(run_copy, monkeypatch, capsys):
    before = (run_copy / "checkpoint.npz").read_bytes()
    ctrl_c_at_augmentation(monkeypatch, 2)
    assert train.main(["--resume", str(run_copy), "--set", "output.checkpoint=false", "--set", "solver.num_epochs=3",
                       "--quiet"]) == train.EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "checkpoint saved" not in err
    assert err == (f"interrupted; nothing was saved (output.checkpoint is false); the earlier checkpoint, "
                   f"{run_copy / 'checkpoint.npz'}, resumes from where it was: python -m convnet.train --resume "
                   f"{run_copy}\n")
    assert (run_copy / "checkpoint.npz").read_bytes() == before


class Killed(BaseException):
    """Stands for the process being killed mid-way."""


def test_a_resume_killed_while_rewriting_config_yaml_leaves_the_old_one_whole(run_copy, monkeypatch):
    before = (run_copy / "config.yaml").read_text()

    def killed_mid_write(config, path):
        Path(path).write_text("name: ti")  # the first bytes, then the kill
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(experiment, "dump_config", killed_mid_write)
        with pytest.raises(Killed):
            train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"])
    assert (run_copy / "config.yaml").read_text() == before
    (run_copy / "config.yaml.x8e2k1.tmp").write_text("name: ti")  # what a real kill leaves behind
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    assert not list(run_copy.glob("*.tmp"))


def test_a_resume_killed_while_rewriting_metrics_csv_keeps_its_rows(run_copy, monkeypatch):
    before = (run_copy / "metrics.csv").read_text()

    class KilledAfterTheHeader(csv.DictWriter):
        def writerows(self, rows):
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(csv, "DictWriter", KilledAfterTheHeader)
        with pytest.raises(Killed):
            train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"])
    assert (run_copy / "metrics.csv").read_text() == before


def truncate(path):
    path.write_bytes(path.read_bytes()[:1000])


def random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def without_metadata(path):
    save_arrays(path, load_arrays(path))


def without(key):
    def damage(path):
        arrays, meta = load_arrays_and_meta(path)
        del arrays[key]
        save_arrays(path, arrays, meta)

    return damage


DAMAGE = {
    "truncated": (truncate, "is damaged"),
    "random bytes": (random_bytes, "is damaged"),
    "no metadata": (without_metadata, "is not a convnet training checkpoint"),
    "no parameter": (without("param/fc_out.W"), "lacks the array(s) param/fc_out.W"),
    "no momentum buffer": (without("optim/conv1.W/velocity"), "lacks the array(s) optim/conv1.W/velocity"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_refused_in_one_line_and_left_in_place(run_copy, capsys, damage):
    make_damage, message = DAMAGE[damage]
    checkpoint = run_copy / "checkpoint.npz"
    make_damage(checkpoint)
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {checkpoint}" in err and message in err and "pickle" not in err
    assert snapshot(run_copy) == before, "a refused resume changes nothing"


@pytest.mark.parametrize("damage, message", [
    ("truncated", "is damaged"),
    ("random bytes", "is damaged"),
    ("no parameter", ": state does not fit this model: it lacks param/fc_out.W"),
])
def test_evaluate_refuses_a_damaged_file_in_one_line(run_copy, capsys, damage, message):
    make_damage, _ = DAMAGE[damage]
    checkpoint = run_copy / "checkpoint.npz"
    make_damage(checkpoint)
    before = checkpoint.read_bytes()
    assert evaluate.main([str(checkpoint), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {checkpoint}") and message in err and "pickle" not in err
    assert checkpoint.read_bytes() == before


def test_a_resume_refused_for_a_changed_batch_size_rewrites_nothing(run_copy, capsys):
    (run_copy / "checkpoint.npz.k3j2h1.tmp").write_bytes(b"left by a killed write")
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", "solver.batch_size=25", "--quiet"]) == train.EXIT_ERROR
    assert "in batches of 32, but this solver has 120 in batches of 25" in capsys.readouterr().err
    assert snapshot(run_copy) == before
    # the run still resumes as it was (one more epoch), and the stale temporary goes
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    assert not list(run_copy.glob("*.tmp"))
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["solver"]["num_epochs"] == 3


@pytest.mark.parametrize("override, message", [
    ("optim.rule=adam", "was written with the sgd_momentum update rule, but this solver uses adam"),
    ("seed=5", "was written by a run seeded with 1, but this solver's seed is 5"),
    ("solver.num_epochs=1", "has already completed 2 epochs, more than this solver's num_epochs (1)"),
])
def test_a_resume_refuses_an_override_that_could_not_take_effect_and_rewrites_nothing(run_copy, capsys, override,
                                                                                       message):
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", override, "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {run_copy / 'checkpoint.npz'} {message}" in err
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("override, message", [
    ("optim.groups=[{params: '*', lr_multiplier: 2.0}]", "with optim.groups [], but this solver's is [{"),
    ("schedule.type=step", "with schedule {'type': 'constant'}, but this solver's is {'type': 'step', "),
    ("solver.lookahead={}", "with solver.lookahead null, but this solver's is {'every': 5, 'decay': 0.95, "),
    ("solver.tta=flip", "with solver.tta null, but this solver's is 'flip': the val accuracies that choose"),
])
def test_a_resume_refuses_a_changed_training_option_in_one_line_and_rewrites_nothing(run_copy, capsys, override,
                                                                                      message):
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", override, "--set", "solver.num_epochs=3",
                       "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {run_copy / 'checkpoint.npz'} was written by a run")
    assert message in err
    assert snapshot(run_copy) == before


@pytest.fixture(scope="module")
def finished_lookahead(tmp_path_factory):
    """A finished two-epoch run whose lookahead and cosine schedule follow num_epochs, keeping its final state."""
    base = tmp_path_factory.mktemp("finished_lookahead")
    config = write_config(base, schedule={"type": "cosine"},
                          solver={**TINY["solver"], "lookahead": {"every": 2}, "result": "final"})
    assert train.main([str(config), "--output-dir", str(base / "runs"), "--quiet"]) == 0
    return only_run_dir(base / "runs")


@pytest.mark.parametrize("override, message", [
    ("solver.num_epochs=3", "with solver.num_epochs 2, but this solver's is 3: the lookahead or the schedule"),
    ("solver.lookahead.every=3", "with solver.lookahead {'every': 2, 'decay': 0.95, 'power': 3.0}, but this "
                                 "solver's is {'every': 3, "),
    ("schedule.min_lr=0.001", "with schedule {'type': 'cosine', 'warmup_epochs': 0.0, 'min_lr': 0.0}, but"),
])
def test_a_run_that_follows_its_length_refuses_a_changed_length_or_lookahead(finished_lookahead, tmp_path, capsys,
                                                                             override, message):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_lookahead, run_dir)
    before = snapshot(run_dir)
    assert train.main(["--resume", str(run_dir), "--set", override, "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert snapshot(run_dir) == before


def test_a_run_that_keeps_its_final_state_may_change_its_tta(finished_lookahead, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_lookahead, run_dir)
    assert train.main(["--resume", str(run_dir), "--set", "solver.tta=flip", "--quiet"]) == 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["solver"]["tta"] == "flip"


def test_a_checkpoint_written_before_the_training_options_were_recorded_still_resumes(run_copy):
    path = run_copy / "checkpoint.npz"
    arrays, meta = load_arrays_and_meta(path)
    newer = ("result", "lookahead", "groups", "schedule", "horizon", "selection_tta")
    assert set(newer) <= set(meta)
    save_arrays(path, arrays, {key: value for key, value in meta.items() if key not in newer})
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    _, meta = load_arrays_and_meta(path)
    assert meta["epoch"] == 3 and meta["schedule"] == {"type": "constant"} and meta["horizon"] is None


def test_a_resume_takes_a_changed_momentum_and_says_so_in_its_config(run_copy):
    assert train.main(["--resume", str(run_copy), "--set", "optim.momentum=0.5", "--set", "solver.num_epochs=3",
                       "--quiet"]) == 0
    _, meta = load_arrays_and_meta(run_copy / "checkpoint.npz")
    assert {config["momentum"] for config in meta["optim_scalars"].values()} == {0.5}
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["optim"]["momentum"] == 0.5


def test_a_resume_refused_for_a_changed_model_rewrites_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", "model.layers.0.filters=6", "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run_copy / 'checkpoint.npz'} does not fit this run" in err
    assert snapshot(run_copy) == before


def test_a_metrics_row_cut_off_mid_write_does_not_stop_a_resume(run_copy):
    with open(run_copy / "metrics.csv", "a") as f:
        f.write("step,2.25")  # killed mid-row: no newline, the iteration and later fields missing
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    with open(run_copy / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(None not in row.values() for row in rows) and "2.25" not in [row["epoch"] for row in rows]
    assert [int(r["epoch"]) for r in rows if r["kind"] == "epoch"] == [1, 2, 3]


@pytest.mark.parametrize("size", ["0", "-4"])
def test_evaluate_refuses_a_batch_size_below_one(run_copy, capsys, size):
    assert evaluate.main([str(run_copy), "--batch-size", size]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --batch-size must be a positive number of images, got {size}\n"
    assert not (run_copy / "evaluation_test.json").exists()


def test_best_npz_and_the_summary_name_the_same_epoch(finished):
    summary = yaml.safe_load((finished / "summary.json").read_text())
    _, meta = load_arrays_and_meta(finished / "best.npz")
    assert summary["best_epoch"] == meta["epoch"] and summary["best_val_acc"] == meta["val_acc"]



def test_a_resume_without_checkpoints_does_not_name_the_old_checkpoint_as_its_state(run_copy):
    # run_copy ends at epoch 2; with output.checkpoint false a longer resume writes no checkpoint
    assert train.main(["--resume", str(run_copy), "--set", "output.checkpoint=false", "--set", "solver.num_epochs=3",
                       "--quiet"]) == 0
    summary = yaml.safe_load((run_copy / "summary.json").read_text())
    assert summary["epochs"] == 3 and load_arrays_and_meta(run_copy / "checkpoint.npz")[1]["epoch"] == 2
    assert summary["checkpoint"] is None  # no file holds the state the summary reports
    assert summary["resumed_from"] == str(run_copy / "checkpoint.npz")


def test_a_resume_names_the_checkpoint_it_wrote_and_the_one_it_resumed_from(run_copy):
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    summary = yaml.safe_load((run_copy / "summary.json").read_text())
    assert summary["checkpoint"] == summary["resumed_from"] == str(run_copy / "checkpoint.npz")
    assert load_arrays_and_meta(run_copy / "checkpoint.npz")[1]["epoch"] == summary["epochs"] == 3


def test_a_resume_reads_and_unzips_the_checkpoint_once(run_copy, monkeypatch):
    real_load, reads = np.load, []

    def counting_load(file, *args, **kwargs):
        reads.append(Path(str(getattr(file, "name", file))).name)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0
    assert reads.count("checkpoint.npz") == 1


HOLD_THE_LOCK = """
import fcntl, sys
lock = open(sys.argv[1], "a")
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def another_process_holds_the_lock(run_copy):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run_copy / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    yield holder
    holder.kill()
    holder.wait()


def test_a_second_run_in_a_locked_run_directory_is_refused_and_a_killed_holder_leaves_no_stale_lock(
        run_copy, another_process_holds_the_lock, capsys):
    before = snapshot(run_copy)
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == train.EXIT_ERROR
    assert capsys.readouterr().err == (f"error: {run_copy} is in use: another training run holds its lock "
                                       f"({run_copy / '.lock'}); wait for it to end, or stop it\n")
    assert snapshot(run_copy) == before
    another_process_holds_the_lock.send_signal(signal.SIGKILL)  # kill -9: the kernel drops its lock
    another_process_holds_the_lock.wait()
    assert train.main(["--resume", str(run_copy), "--set", "solver.num_epochs=3", "--quiet"]) == 0


def test_a_fresh_run_holds_its_run_directorys_lock_until_it_ends(tmp_path, monkeypatch):
    write_plots, refused = experiment.write_plots, []

    def plots_while_locked(run_dir, *args):
        try:
            with experiment.lock_run_dir(run_dir):
                pass
        except experiment.RunDirectoryInUse:
            refused.append(run_dir)
        write_plots(run_dir, *args)

    monkeypatch.setattr(experiment, "write_plots", plots_while_locked)
    assert train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    assert refused == [run_dir]
    with experiment.lock_run_dir(run_dir):  # released at the end
        pass
