"""Using a trained model: self-contained checkpoints, evaluation without the training data,
convnet.load_model / predict_proba, and the predict command line on image files."""

import json
import pickle
import warnings

import numpy as np
import pytest

import convnet
from convnet import evaluate, experiment, inference, train
from convnet.checkpoint import CheckpointError, load_arrays_and_meta, read_inference, save_arrays
from convnet.data import TRAIN_BATCHES, load_sample, normalization_stats

from runs import only_run_dir, write_config


def train_tiny(tmp_path, **changes):
    output = tmp_path / "runs"
    assert train.main([str(write_config(tmp_path, **changes)), "--output-dir", str(output), "--quiet"]) == 0
    return only_run_dir(output)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the tiny experiment on the bundled sample (shared: the tests only read it)."""
    return train_tiny(tmp_path_factory.mktemp("trained"))


def write_cifar10_from_sample(root, per_batch=40, num_test=100):
    """Official-style CIFAR-10 batches under root/cifar-10-batches-py made of the sample's real images."""
    X_train, y_train, X_test, y_test = load_sample()
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    parts = [(name, X_train[i * per_batch : (i + 1) * per_batch], y_train[i * per_batch : (i + 1) * per_batch])
             for i, name in enumerate(TRAIN_BATCHES)]
    for name, X, y in [*parts, ("test_batch", X_test[:num_test], y_test[:num_test])]:
        with open(directory / name, "wb") as f:
            pickle.dump({b"data": X.reshape(len(X), -1), b"labels": [int(v) for v in y]}, f, protocol=2)
    return directory


def strip_inference_record(path):
    """Rewrite a weights file as an older convnet wrote it: the arrays and metadata without the record."""
    arrays, meta = load_arrays_and_meta(path)
    arrays = {key: value for key, value in arrays.items() if not key.startswith("inference/")}
    meta = {key: value for key, value in meta.items() if key != "inference"}
    if "arrays" in meta:
        meta["arrays"] = sorted(key for key in meta["arrays"] if not key.startswith("inference/"))
    save_arrays(path, arrays, meta)


# ----------------------------------------------------------------------
# self-contained checkpoints
# ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["best.npz", "checkpoint.npz"])
def test_both_weights_files_carry_the_config_the_normalisation_and_the_class_names(trained, name):
    _, record = read_inference(trained / name)
    assert record.config["model"]["type"] == "ConvNet" and record.config["seed"] == 1
    assert record.config["data"]["normalization"] == "per_channel" and record.image_shape == (3, 32, 32)
    assert record.class_names[:3] == ["airplane", "automobile", "bird"] and len(record.class_names) == 10
    expected = normalization_stats(load_sample()[0][:120], "per_channel")  # the run's 120 training rows
    np.testing.assert_allclose(record.normalization["mean"], expected["mean"], rtol=1e-6)
    np.testing.assert_allclose(record.normalization["std"], expected["std"], rtol=1e-6)


def test_evaluate_reads_no_training_data_and_needs_no_config_yaml(tmp_path):
    root = tmp_path / "data"
    batches = write_cifar10_from_sample(root)
    run_dir = train_tiny(tmp_path, data={"source": "cifar10", "root": str(root)})
    summary = json.loads((run_dir / "summary.json").read_text())
    for name in TRAIN_BATCHES:  # the training set is gone; the test batch stays
        (batches / name).unlink()
    elsewhere = tmp_path / "shipped"
    elsewhere.mkdir()
    (run_dir / "best.npz").rename(elsewhere / "best.npz")  # the weights alone, no config.yaml beside them
    report, _ = evaluate.evaluate(elsewhere / "best.npz")
    assert report["accuracy"] == summary["test_acc"] and report["images"] == 60 and report["note"] is None


def test_evaluate_on_the_sample_never_loads_the_training_split(trained, monkeypatch):
    summary = json.loads((trained / "summary.json").read_text())

    def refuse(*args, **kwargs):
        raise AssertionError("the training split was loaded")

    monkeypatch.setattr(experiment, "build_data", refuse)
    monkeypatch.setattr(convnet.data, "prepare_splits", refuse)
    assert evaluate.evaluate(trained)[0]["accuracy"] == summary["test_acc"]


def test_an_older_checkpoint_still_evaluates_with_a_note_naming_what_it_lacks(tmp_path, capsys):
    run_dir = train_tiny(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    strip_inference_record(run_dir / "best.npz")
    assert evaluate.main([str(run_dir), "--no-plot"]) == 0
    captured = capsys.readouterr()
    assert "test accuracy" in captured.out
    assert "note: " in captured.err and "lacks the model's arguments" in captured.err
    assert "the normalisation statistics and the class names" in captured.err
    assert f"rebuilt them from {run_dir / 'config.yaml'}" in captured.err
    assert json.loads((run_dir / "evaluation_test.json").read_text())["accuracy"] == summary["test_acc"]
    with pytest.warns(UserWarning, match="lacks the model's arguments"):
        model = convnet.load_model(run_dir)
    assert model.predict(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2,)


def test_an_older_checkpoint_without_its_config_yaml_is_one_clear_error(tmp_path, capsys):
    run_dir = train_tiny(tmp_path)
    strip_inference_record(run_dir / "best.npz")
    (run_dir / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="lacks the model's arguments .*config.yaml is not there"):
        convnet.load_model(run_dir / "best.npz")
    assert evaluate.main([str(run_dir), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "best.npz holds weights only" in err


def test_a_checkpoint_with_the_record_still_resumes(tmp_path):
    run_dir = train_tiny(tmp_path, solver={"num_epochs": 1})
    assert train.main(["--resume", str(run_dir), "--set", "solver.num_epochs=2", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2
    assert read_inference(run_dir / "checkpoint.npz")[1].config["solver"]["num_epochs"] == 2
