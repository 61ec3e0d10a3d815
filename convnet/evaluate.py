"""Evaluate a trained model: accuracy, per-class accuracy and a confusion matrix.

    python -m convnet.evaluate runs/quickstart/20261126-101500          # best.npz of a run
    python -m convnet.evaluate runs/quickstart/20261126-101500/checkpoint.npz --split val

The run's config.yaml says how to rebuild the model and the data (same normalisation,
computed from the same training split). Writes evaluation_<split>.json and
confusion_<split>.png next to the weights.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convnet import experiment
from convnet.checkpoint import load_weights
from convnet.config import ConfigError, load_config
from convnet.data import CLASS_NAMES, CorruptDataError, DownloadError


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) counts: rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def locate(target):
    """(run directory, weights file) for a run directory or a .npz file inside one."""
    target = Path(target)
    if target.is_dir():
        weights = target / "best.npz"
        if not weights.is_file():
            weights = target / "checkpoint.npz"
        run_dir = target
    else:
        weights, run_dir = target, target.parent
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights} (expected best.npz or checkpoint.npz in a run directory)")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: point at a run directory written by convnet.train")
    return run_dir, weights


def evaluate(target, split="test", batch_size=256, data_root=None):
    """Accuracy report (a dict) of the weights at ``target`` on ``split`` ('test', 'val' or 'train')."""
    run_dir, weights = locate(target)
    overrides = [f"data.root={data_root}"] if data_root else []
    config = load_config(run_dir / "config.yaml", overrides)
    model = experiment.build_model(config)
    load_weights(model, weights)  # a damaged file is refused before the data is loaded
    splits = experiment.build_data(config)
    key = {"test": "test", "val": "val", "train": "train"}[split]
    X, y = splits[f"X_{key}"], splits[f"y_{key}"]
    if len(X) == 0:
        raise ValueError(f"the {split} split of this run's data is empty")
    predictions = model.predict(X, batch_size)
    num_classes = int(config["model"].get("num_classes", len(CLASS_NAMES)))
    matrix = confusion_matrix(y, predictions, num_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    names = list(CLASS_NAMES) if num_classes == len(CLASS_NAMES) else [str(c) for c in range(num_classes)]
    return {
        "weights": str(weights), "split": split, "images": int(len(y)),
        "accuracy": float(np.mean(predictions == y)),
        "per_class_accuracy": {name: float(acc) for name, acc in zip(names, per_class)},
        "confusion_matrix": matrix.tolist(), "class_names": names,
    }, run_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m convnet.evaluate",
        description="Accuracy, per-class accuracy and a confusion-matrix PNG for a trained run.",
        epilog="TARGET is a run directory (its best.npz is used) or a .npz checkpoint inside one.",
    )
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument("--split", choices=["test", "val", "train"], default="test", help="(default: test)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass, at least 1 (default: 256)")
    parser.add_argument("--data-root", help="where CIFAR-10 lives, if not where the run found it")
    parser.add_argument("--no-plot", action="store_true", help="skip the confusion-matrix PNG")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        print(f"error: --batch-size must be a positive number of images, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        report, run_dir = evaluate(args.target, args.split, args.batch_size, args.data_root)
    except (FileNotFoundError, ConfigError, CorruptDataError, DownloadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out_json = run_dir / f"evaluation_{args.split}.json"
    with open(out_json, "w") as f:
        json.dump(report, f, indent=2)
    print(f"{args.split} accuracy: {report['accuracy']:.4f} on {report['images']} images ({report['weights']})")
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
