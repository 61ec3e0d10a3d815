"""Evaluate a trained model: accuracy, per-class accuracy and a confusion matrix.

    python -m convnet.evaluate runs/quickstart/20261126-101500          # best.npz of a run
    python -m convnet.evaluate runs/quickstart/20261126-101500/checkpoint.npz --split val
    python -m convnet.evaluate runs/cifar10_airbench/20261202-041500 --tta flip_translate

The weights file carries the model's arguments, the normalisation statistics and the class
names (convnet.checkpoint.Inference), so the test split is evaluated without the training
data: only the test images of the run's data source are read. The val and train splits are
rows of the training set, which is then read. An older file without that record is evaluated
through its run's config.yaml, recomputing the statistics from the training data, with a
note saying what it lacks. Writes evaluation_<split>.json and confusion_<split>.png next to
the weights. Test-time augmentation (``--tta``) defaults to the run's ``solver.tta``.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convnet import data as cifar
from convnet.config import ConfigError, takes_images
from convnet.data import CorruptDataError, DownloadError
from convnet.inference import build_model, load_inference, locate
from convnet.models.base import TTA_MODES, predict_labels

#: --tta: 'run' (the run's solver.tta), 'none', or a mode of models.base.TTA_MODES.
TTA_CHOICES = ("run", "none", *(mode for mode in TTA_MODES if mode is not None))


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) counts: rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def test_images(data_config):
    """(X uint8 (N, C, H, W), y (N,)): the first data.num_test test images of the run's source, and
    nothing of its training set (for CIFAR-10 only the test_batch file is read)."""
    if data_config["source"] == "sample":
        _, _, X, y = cifar.load_sample()
        source = f"the bundled sample {cifar.SAMPLE_PATH}"
    else:
        source = cifar.find_batches_dir(data_config.get("root")) / cifar.TEST_BATCH
        X, y = cifar.load_batch(source)
    count = len(X) if data_config.get("num_test") is None else int(data_config["num_test"])
    if count > len(X):
        raise ValueError(f"this run tested on {count} images, but the test set of {source} holds only {len(X)}")
    return X[:count], y[:count]


def split_images(inference, split, data_root=None):
    """(X normalised like the training set, y) of ``split`` ('test', 'val' or 'train') of the run's data."""
    config = json.loads(json.dumps(inference.config))
    if data_root:
        config["data"]["root"] = str(data_root)
    dtype = np.dtype(config["model"]["dtype"])
    if split == "test":
        X, y = test_images(config["data"])
        return cifar.normalize_images(X, inference.normalization, dtype), y
    from convnet import experiment  # val and train are rows of the training set

    splits = experiment.build_data(config)
    return splits[f"X_{split}"], splits[f"y_{split}"]


def evaluate(target, split="test", batch_size=256, data_root=None, tta="run"):
    """(accuracy report dict, directory of the weights) of the weights at ``target`` on ``split``.

    tta: 'run' (the run's solver.tta), None or 'none' (no test-time augmentation), 'flip', 'flip_translate'.
    The report's 'note' says what an older weights file lacked (None for a self-contained one).
    """
    if split not in ("test", "val", "train"):
        raise ValueError(f"split must be 'test', 'val' or 'train', got {split!r}")
    if tta not in (*TTA_CHOICES, None):
        raise ValueError(f"tta must be one of {list(TTA_CHOICES)}, got {tta!r}")
    weights = locate(target)
    state, inference, note = load_inference(weights, data_root)
    model = build_model(inference, state, weights)  # a damaged file is refused before the data is loaded
    if tta == "run":
        tta = inference.config.get("solver", {}).get("tta")
    tta = None if tta == "none" else tta
    if tta is not None and not takes_images(inference.config["model"]):
        raise ValueError(f"--tta {tta} needs a model of images; this {inference.config['model']['type']} "
                         "takes flat vectors")
    X, y = split_images(inference, split, data_root)
    if len(X) == 0:
        raise ValueError(f"the {split} split of this run's data is empty")
    predictions = predict_labels(model, X, batch_size, tta)
    names = list(inference.class_names)
    matrix = confusion_matrix(y, predictions, len(names))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    return {
        "weights": str(weights), "split": split, "images": int(len(y)),
        "accuracy": float(np.mean(predictions == y)),
        "per_class_accuracy": {name: float(acc) for name, acc in zip(names, per_class)},
        "confusion_matrix": matrix.tolist(), "class_names": names, "note": note, "tta": tta,
    }, weights.parent


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m convnet.evaluate",
        description="Accuracy, per-class accuracy and a confusion-matrix PNG for a trained run.",
        epilog="TARGET is a run directory (its best.npz is used, else checkpoint.npz) or a .npz checkpoint. "
               "The test split needs only the test images of the run's data source; val and train are "
               "rows of the training set.",
    )
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test", help="(default: test)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass, at least 1 (default: 256)")
    parser.add_argument("--data-root", help="where CIFAR-10 lives, if not where the run found it")
    parser.add_argument("--no-plot", action="store_true", help="skip the confusion-matrix PNG")
    parser.add_argument("--tta", choices=TTA_CHOICES, default="run",
                        help="test-time augmentation: flip (mean logits of the image and its mirror), flip_translate "
                             "(and of 1-pixel shifts), none; default: the run's solver.tta")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        print(f"error: --batch-size must be a positive number of images, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        report, run_dir = evaluate(args.target, args.split, args.batch_size, args.data_root, args.tta)
    except (FileNotFoundError, ConfigError, CorruptDataError, DownloadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report["note"]:
        print(f"note: {report['note']}", file=sys.stderr)
    out_json = run_dir / f"evaluation_{args.split}.json"
    with open(out_json, "w") as f:
        json.dump(report, f, indent=2)
    with_tta = f", tta {report['tta']}" if report["tta"] else ""
    print(f"{args.split} accuracy: {report['accuracy']:.4f} on {report['images']} images{with_tta} "
          f"({report['weights']})")
    for name, accuracy in report["per_class_accuracy"].items():
        print(f"  {name:<12} {accuracy:.3f}")
    if not args.no_plot:
        from convnet import plots  # matplotlib only when plotting (see experiment.write_plots)

        png = run_dir / f"confusion_{args.split}.png"
        plots.plot_confusion(report["confusion_matrix"], report["class_names"], png)
        print(f"confusion matrix: {png}")
    print(f"report: {out_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
