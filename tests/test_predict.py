"""Using a trained model: self-contained checkpoints, evaluation without the training data,
convnet.load_model / predict_proba, and the predict command line on image files."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convnet
from convnet import evaluate, experiment, inference, predict, train
from convnet.checkpoint import CheckpointError, load_arrays_and_meta, load_weights, read_inference, save_arrays
from convnet.config import load_config
from convnet.data import TRAIN_BATCHES, load_sample, normalization_stats, normalize_images
from convnet.inference import softmax
from convnet.models.base import tta_scores

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
    expected = experiment.build_data(load_config(run_dir / "config.yaml"))["X_test"]  # as training normalised it
    for name in TRAIN_BATCHES:  # the training set is gone; the test batch stays
        (batches / name).unlink()
    elsewhere = tmp_path / "shipped"
    elsewhere.mkdir()
    (run_dir / "best.npz").rename(elsewhere / "best.npz")  # the weights alone, no config.yaml beside them
    report, _ = evaluate.evaluate(elsewhere / "best.npz")
    assert report["accuracy"] == summary["test_acc"] and report["images"] == 60 and report["note"] is None
    X_test, _ = evaluate.split_images(read_inference(elsewhere / "best.npz")[1], "test")
    np.testing.assert_array_equal(X_test, expected)


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


def test_predict_and_export_print_an_older_checkpoints_note_as_one_line(tmp_path, capsys):
    run_dir = train_tiny(tmp_path)
    strip_inference_record(run_dir / "best.npz")
    image = tmp_path / "one.png"
    Image.fromarray(load_sample()[2][0].transpose(1, 2, 0)).save(image)
    assert predict.main([str(run_dir), str(image)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1 and "Warning" not in err
    pytest.importorskip("onnx")
    from convnet import export

    assert export.main([str(run_dir), str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: ") and err.count("\n") == 1 and "Warning" not in err


def test_an_older_checkpoint_without_its_config_yaml_is_one_clear_error(tmp_path, capsys):
    run_dir = train_tiny(tmp_path)
    strip_inference_record(run_dir / "best.npz")
    (run_dir / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="lacks the model's arguments .*config.yaml is not there"):
        convnet.load_model(run_dir / "best.npz")
    assert evaluate.main([str(run_dir), "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "best.npz holds weights only" in err


def test_an_older_checkpoint_resumes_and_its_next_checkpoint_carries_the_record(tmp_path):
    run_dir = train_tiny(tmp_path, solver={"num_epochs": 1})
    strip_inference_record(run_dir / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="holds weights only"):
        read_inference(run_dir / "checkpoint.npz")
    assert train.main(["--resume", str(run_dir), "--set", "solver.num_epochs=2", "--quiet"]) == 0
    assert read_inference(run_dir / "checkpoint.npz")[1].class_names == list(convnet.data.CLASS_NAMES)


def test_a_checkpoint_with_the_record_still_resumes(tmp_path):
    run_dir = train_tiny(tmp_path, solver={"num_epochs": 1})
    assert train.main(["--resume", str(run_dir), "--set", "solver.num_epochs=2", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["epochs"] == 2
    assert read_inference(run_dir / "checkpoint.npz")[1].config["solver"]["num_epochs"] == 2


# ----------------------------------------------------------------------
# convnet.load_model and predict_proba
# ----------------------------------------------------------------------


def sample_test_images(count=60):
    """The first ``count`` test images of the bundled sample as uint8 (N, 32, 32, 3), and their labels."""
    _, _, X, y = load_sample()
    return np.ascontiguousarray(X[:count].transpose(0, 2, 3, 1)), y[:count]


def test_load_model_predicts_what_the_run_measured(trained):
    summary = json.loads((trained / "summary.json").read_text())
    model = convnet.load_model(trained)
    images, labels = sample_test_images()
    config = load_config(trained / "config.yaml")  # the training stack's way: config, data, model, weights
    reference = load_weights(experiment.build_model(config), trained / "best.npz")
    expected = reference.loss(experiment.build_data(config)["X_test"])
    assert np.std(expected, axis=0).min() > 0, "the scores differ between images"
    np.testing.assert_allclose(model.logits(images), expected, rtol=1e-5, atol=1e-6)
    probabilities = model.predict_proba(images)
    assert probabilities.shape == (60, 10) and np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert float(np.mean(probabilities.argmax(axis=1) == labels)) == summary["test_acc"]
    assert model.class_names == list(convnet.data.CLASS_NAMES) and model.input_shape == (32, 32, 3)
    from_file = convnet.load_model(trained / "best.npz").predict_proba(images[:5], batch_size=2)
    np.testing.assert_allclose(from_file, probabilities[:5], rtol=1e-5, atol=1e-7)


def test_tta_averages_the_logits_of_the_image_and_its_mirror_as_training_does(trained):
    """The one rule (models.base.tta_scores): logits averaged, then the softmax. (The run's
    per-channel normalisation commutes with the mirror, so raw mirrored images give the same.)"""
    model = convnet.load_model(trained)
    model.model.params["fc_out.W"] *= 30  # sharper scores, so that averaging probabilities differs
    images, _ = sample_test_images(8)
    mean_logits = (model.logits(images) + model.logits(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    for tta in ("flip", True):  # True: the older boolean form
        np.testing.assert_allclose(model.logits(images, tta=tta), mean_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.predict_proba(images, tta=tta), softmax(mean_logits), rtol=1e-5, atol=1e-7)
    mean_probabilities = (model.predict_proba(images) + model.predict_proba(images[:, :, ::-1])) / 2
    assert np.abs(model.predict_proba(images, tta="flip") - mean_probabilities).max() > 1e-4  # float32 noise: 1e-7
    assert not np.allclose(model.predict_proba(images, tta="flip"), model.predict_proba(images))


def test_tta_flip_translate_is_the_rule_of_the_accuracy_checks(trained):
    model = convnet.load_model(trained)
    images, _ = sample_test_images(8)
    X = normalize_images(images.transpose(0, 3, 1, 2), model.normalization, model.model.dtype)
    expected = tta_scores(model.model, X, "flip_translate")
    np.testing.assert_allclose(model.logits(images, batch_size=3, tta="flip_translate"), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(expected, tta_scores(model.model, X, "flip"))
    with pytest.raises(ValueError, match="tta must be one of .*got 'mirror'"):
        model.predict(images, tta="mirror")


@pytest.mark.parametrize("images, error, message", [
    (np.zeros((2, 32, 32, 3), np.float32), TypeError, "images must be uint8 .* got float32"),
    (np.zeros((2, 3, 32, 32), np.uint8), ValueError, r"shape \(N, 32, 32, 3\) .* got \(2, 3, 32, 32\)"),
    (np.zeros((32, 32, 3), np.uint8), ValueError, r"got \(32, 32, 3\)"),
])
def test_predict_proba_names_what_is_wrong_with_its_input(trained, images, error, message):
    with pytest.raises(error, match=message):
        convnet.load_model(trained).predict_proba(images)


def test_load_model_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no weights in"):
        convnet.load_model(tmp_path)
    (tmp_path / "best.npz").write_bytes(b"not an archive")
    with pytest.raises(CheckpointError, match="best.npz is damaged"):
        convnet.load_model(tmp_path)


# ----------------------------------------------------------------------
# image files and the predict command line
# ----------------------------------------------------------------------

def save_image(path, pixels, mode=None, **options):
    Image.fromarray(pixels, mode).save(path, **options)
    return path


def test_load_image_centre_crops_then_resizes_or_stretches(tmp_path):
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16], wide[:, 16:48], wide[:, 48:] = (255, 0, 0), (0, 0, 255), (255, 0, 0)  # red | blue | red
    path = save_image(tmp_path / "wide.png", wide)
    cropped = inference.load_image(path, (32, 32))
    assert cropped.shape == (32, 32, 3) and cropped.dtype == np.uint8
    assert np.all(cropped == (0, 0, 255)), "the centred square is the blue middle"
    stretched = inference.load_image(path, (32, 32), resize="stretch")
    assert tuple(stretched[16, 0]) == (255, 0, 0) and tuple(stretched[16, 16]) == (0, 0, 255)
    exact = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(inference.load_image(save_image(tmp_path / "exact.png", exact), (32, 32)), exact)


def test_load_image_converts_grayscale_and_puts_transparency_on_white(tmp_path):
    gray = save_image(tmp_path / "gray.png", np.full((40, 40), 77, np.uint8))
    assert np.all(inference.load_image(gray, (32, 32)) == 77)
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:16] = (10, 200, 30, 255)  # top half opaque green, bottom half fully transparent black
    image = inference.load_image(save_image(tmp_path / "rgba.png", rgba), (32, 32))
    assert tuple(image[0, 0]) == (10, 200, 30) and tuple(image[31, 0]) == (255, 255, 255)


@pytest.fixture
def image_files(tmp_path):
    """Real sample images as PNG (32x32), JPEG (96x64) and BMP (grayscale, 50x50), and broken files."""
    images, _ = sample_test_images(3)
    good = {
        "png": save_image(tmp_path / "a.png", images[0]),
        "jpeg": save_image(tmp_path / "b.jpg", np.asarray(Image.fromarray(images[1]).resize((96, 64))), quality=95),
        "bmp": save_image(tmp_path / "c.bmp", np.asarray(Image.fromarray(images[2]).convert("L").resize((50, 50)))),
    }
    (tmp_path / "text.png").write_text("this is not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "cut.png").write_bytes(good["png"].read_bytes()[:200])
    bad = {"not an image": tmp_path / "text.png", "empty": tmp_path / "empty.jpg", "truncated": tmp_path / "cut.png",
           "missing": tmp_path / "absent.png"}
    return good, bad


def test_predict_prints_the_top_classes_of_each_image(trained, image_files, capsys):
    good, _ = image_files
    assert predict.main([str(trained), *map(str, good.values()), "--top-k", "2"]) == predict.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    model = convnet.load_model(trained)
    expected = model.predict_proba(sample_test_images(1)[0])[0]
    best = np.argsort(-expected)[:2]
    names = model.class_names
    assert lines[0] == (f"{good['png']}: {names[best[0]]} {expected[best[0]]:.3f}, "
                        f"{names[best[1]]} {expected[best[1]]:.3f}")
    assert all(line.count(",") == 1 for line in lines)


def test_predict_json_reports_bad_images_and_still_classifies_the_others(trained, image_files, capsys):
    good, bad = image_files
    paths = [good["png"], *bad.values(), good["jpeg"], good["bmp"]]
    assert predict.main([str(trained), *map(str, paths), "--json", "--tta", "flip"]) == predict.EXIT_SOME_IMAGES_FAILED
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    results = document["results"]
    assert [r["image"] for r in results] == [str(p) for p in paths] and document["tta"] == "flip"
    assert [("predictions" in r) for r in results] == [True, False, False, False, False, True, True]
    errors = {name: results[1 + i]["error"] for i, name in enumerate(bad)}
    assert "not an image file" in errors["not an image"] and "empty (0 bytes)" in errors["empty"]
    assert "truncated" in errors["truncated"] and "no such file" in errors["missing"]
    assert all(str(bad[name]) in errors[name] for name in bad)
    assert captured.err.count("error: ") == 4 and "Traceback" not in captured.err
    model = convnet.load_model(trained)
    expected = model.predict_proba(sample_test_images(1)[0], tta="flip")[0]
    top = results[0]["predictions"]
    assert len(top) == 3 and top[0]["index"] == int(np.argmax(expected))
    assert top[0]["probability"] == pytest.approx(float(expected.max()), rel=1e-5)
    assert top[0]["class"] == model.class_names[top[0]["index"]]


def test_predict_tta_takes_the_modes_of_evaluate_and_refuses_others(trained, image_files, capsys):
    good, _ = image_files
    assert predict.main([str(trained), str(good["png"]), "--tta", "flip_translate", "--json"]) == predict.EXIT_OK
    document = json.loads(capsys.readouterr().out)
    expected = convnet.load_model(trained).predict_proba(sample_test_images(1)[0], tta="flip_translate")[0]
    assert document["tta"] == "flip_translate"
    assert document["results"][0]["predictions"][0]["probability"] == pytest.approx(float(expected.max()), rel=1e-5)
    with pytest.raises(SystemExit) as stopped:
        predict.main([str(trained), str(good["png"]), "--tta", "mirror"])
    assert stopped.value.code == 2 and "argument --tta: invalid choice: 'mirror'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:  # the mode is always given: an image is not taken for one
        predict.main([str(trained), "--tta", str(good["png"]), str(good["png"])])
    assert stopped.value.code == 2 and "argument --tta: invalid choice" in capsys.readouterr().err
    assert predict.main([str(trained), str(good["png"]), "--tta", "none", "--json"]) == predict.EXIT_OK
    assert json.loads(capsys.readouterr().out)["tta"] is None


def test_predict_without_a_model_is_one_line_and_exit_2(tmp_path, image_files, capsys):
    good, _ = image_files
    assert predict.main([str(tmp_path / "nowhere"), str(good["png"])]) == predict.EXIT_NO_MODEL
    err = capsys.readouterr().err
    assert err.startswith("error: no weights at") and err.count("\n") == 1


def test_predict_help_documents_the_exit_status_and_resizing():
    result = subprocess.run([sys.executable, "-m", "convnet.predict", "--help"], capture_output=True, text=True,
                            check=False)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0 and "exit status: 0 every image classified; 1 one or more images" in text
    assert "--resize crop (the default) cuts the largest centred square" in text


def test_predict_starts_without_importing_matplotlib_or_the_training_stack():
    code = ("import sys, convnet.predict; print(sorted(m for m in sys.modules if m.startswith('matplotlib') "
            "or m == 'convnet.experiment'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
