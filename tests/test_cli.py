"""The command lines: convnet.train (run directory, resume, dry run, errors) and convnet.evaluate."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from convnet import evaluate, train
from convnet.checkpoint import load_arrays, load_arrays_and_meta

from runs import only_run_dir, write_config


def test_training_writes_the_run_directory(tmp_path, capsys):
    output = tmp_path / "runs"
    assert train.main([str(write_config(tmp_path)), "--output-dir", str(output), "--no-progress"]) == 0
    run_dir = only_run_dir(output)
    for name in ("config.yaml", "metrics.csv", "checkpoint.npz", "best.npz", "summary.json", "loss.png",
                 "accuracy.png", "filters.png"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and (summary["epochs"], summary["iterations"]) == (2, 8)
    _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    assert summary["images_per_second"] == round(2 * 120 / meta["train_seconds"], 1)  # training time only
    assert summary["test_acc"] == evaluate.evaluate(run_dir)[0]["accuracy"]  # best.npz on the 60 test images
    assert summary["data"] == {"source": "sample", "train": 120, "val": 40, "test": 60}
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["kind"] for row in rows].count("epoch") == 2
    assert [int(row["iteration"]) for row in rows if row["kind"] == "step"] == [2, 4, 6, 8]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["solver"]["eval_batch_size"] == 256  # defaults are written out
    assert "test accuracy" in capsys.readouterr().out


def test_resume_continues_as_if_never_stopped(tmp_path):
    straight_out, split_out = tmp_path / "straight", tmp_path / "split"
    config = str(write_config(tmp_path))
    assert train.main([config, "--output-dir", str(straight_out), "--quiet"]) == 0
    assert train.main([config, "--output-dir", str(split_out), "--quiet", "--set", "solver.num_epochs=1"]) == 0
    run_dir = only_run_dir(split_out)
    assert train.main(["--resume", str(run_dir), "--set", "solver.num_epochs=2", "--quiet"]) == 0
    straight = load_arrays(only_run_dir(straight_out) / "checkpoint.npz")
    resumed = load_arrays(run_dir / "checkpoint.npz")
    for key in straight:
        if key.startswith(("param/", "bn/")):
            np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    with open(run_dir / "metrics.csv") as f:
        assert [row["kind"] for row in csv.DictReader(f)].count("epoch") == 2


def test_dry_run_trains_nothing(tmp_path, capsys):
    output = tmp_path / "runs"
    assert train.main([str(write_config(tmp_path)), "--output-dir", str(output), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "ms per step" in printed and "parameters" in printed and "nothing was trained" in printed
    assert not output.exists()


def test_bad_config_stops_before_training(tmp_path, capsys):
    output = tmp_path / "runs"
    path = write_config(tmp_path, optim={"rule": "adam", "learning_rat": 0.1})
    assert train.main([str(path), "--output-dir", str(output)]) == train.EXIT_CONFIG
    assert "'optim.learning_rat' for adam: unknown; did you mean 'learning_rate'?" in capsys.readouterr().err
    assert not output.exists()
    assert train.main([str(path), "--set", "optim.learning_rat"]) == train.EXIT_CONFIG


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")  # the point
def test_divergence_exits_with_a_message(tmp_path, capsys):
    path = write_config(tmp_path, optim={"rule": "sgd", "learning_rate": 1e30})
    assert train.main([str(path), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert "training diverged: loss became" in err
    assert "last good checkpoint" not in err and "no checkpoint had been written yet" in err  # in epoch 1


def test_running_out_of_memory_is_one_line_naming_what_to_lower(tmp_path, capsys, monkeypatch):
    from convnet import experiment

    def exhausted(config):
        raise MemoryError

    monkeypatch.setattr(experiment, "build_model", exhausted)
    path = write_config(tmp_path)
    assert train.main([str(path), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: out of memory") and "solver.batch_size" in err


def test_missing_cifar10_is_explained(tmp_path, capsys):
    path = write_config(tmp_path, data={"source": "cifar10", "root": str(tmp_path / "nowhere")})
    assert train.main([str(path), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == train.EXIT_ERROR
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "python -m convnet.data download" in err


def test_evaluate_reports_accuracy_per_class_and_a_confusion_matrix(tmp_path, capsys):
    output = tmp_path / "runs"
    assert train.main([str(write_config(tmp_path)), "--output-dir", str(output), "--quiet"]) == 0
    run_dir = only_run_dir(output)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert evaluate.main([str(run_dir)]) == 0
    report = json.loads((run_dir / "evaluation_test.json").read_text())
    assert report["accuracy"] == pytest.approx(summary["test_acc"])
    assert len(report["per_class_accuracy"]) == 10
    assert np.sum(report["confusion_matrix"]) == 60
    assert (run_dir / "confusion_test.png").is_file()
    assert evaluate.main([str(tmp_path / "nothing-here")]) == 1
    assert "no weights" in capsys.readouterr().err


def test_confusion_matrix_by_hand():
    matrix = evaluate.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 1, 0]])


@pytest.mark.parametrize("module", ["convnet.train", "convnet.evaluate", "convnet.data"])
def test_help_works(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "usage:" in result.stdout


def test_train_help_says_what_stops_a_run_and_with_which_status(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Ctrl-C, or SIGTERM (what kill, job schedulers and launchers send), stops between two steps" in text
    assert "130 interrupted (Ctrl-C), 143 stopped by SIGTERM" in text and "run directory in use" in text


def test_train_without_arguments_explains_usage():
    result = subprocess.run([sys.executable, "-m", "convnet.train"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "give a CONFIG file, or --resume RUN_DIR" in result.stderr


def test_the_command_lines_start_without_importing_matplotlib():
    code = "import sys, convnet.train, convnet.evaluate; print(sorted(m for m in sys.modules if 'matplotlib' in m))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
