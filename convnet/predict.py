"""Classify image files with a trained model: the top classes and their probabilities.

    python -m convnet.predict runs/quickstart/20261126-101500 cat.jpg dog.png
    python -m convnet.predict runs/quickstart/20261126-101500/best.npz photos/*.jpg --top-k 3 --tta flip --json

Each image is fitted to the model's input by convnet.inference.load_image (centre crop, then
resize; see --resize). An image that cannot be read gets its own error and the others are
still classified.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from convnet.checkpoint import CheckpointError
from convnet.options import ConfigError
from convnet.data import CorruptDataError, DownloadError
from convnet.inference import RESIZE_MODES, ImageError, load_image, open_model
from convnet.models.base import TTA_MODES

EXIT_OK, EXIT_SOME_IMAGES_FAILED, EXIT_NO_MODEL = 0, 1, 2

EPILOG = """\
TARGET is a run directory (its best.npz is used, else checkpoint.npz) or a .npz checkpoint.
Images: PNG, JPEG, BMP or anything else Pillow reads, of any size. Grayscale and palette images
are converted to RGB, and transparent pixels are put on white. --resize crop (the default) cuts
the largest centred square (the model's aspect ratio) and resizes it to the model's input;
--resize stretch resizes the whole image.

exit status: 0 every image classified; 1 one or more images could not be read (each named on
stderr, or in the JSON with an "error"), the others classified; 2 bad arguments, or the model
could not be loaded.
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m convnet.predict", description="The top-k classes of image files under a trained model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    parser.add_argument("--top-k", type=int, default=3, metavar="K", help="classes shown per image (default: 3)")
    parser.add_argument("--tta", choices=[*(mode for mode in TTA_MODES if mode), "none"], default="none",
                        help="test-time augmentation, as training's solver.tta and evaluate --tta: the mean logits "
                             "of the image and its mirror (flip), and of its 1-pixel shifts (flip_translate); the "
                             "softmax is taken after the average (default: none)")
    parser.add_argument("--resize", choices=RESIZE_MODES, default="crop",
                        help="fit each image by centre crop then resize (default), or by stretching it")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of text")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--data-root", help="for an older checkpoint without its normalisation: where the "
                                            "run's training data lives")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def top_k(probabilities, class_names, k):
    """[{'class', 'index', 'probability'}] of the k most probable classes, most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": class_names[i], "index": int(i), "probability": float(probabilities[i])} for i in order]


def classify(model, paths, k=3, tta=None, resize="crop", batch_size=64):
    """One result per path, in order: {'image', 'predictions'} or {'image', 'error'}.
    tta: None, 'flip' or 'flip_translate' (see TrainedModel.logits)."""
    height, width, _ = model.input_shape
    results, images, readable = [], [], []
    for path in paths:
        try:
            images.append(load_image(path, (height, width), resize))
            readable.append(len(results))
            results.append({"image": str(path)})
        except ImageError as exc:
            results.append({"image": str(path), "error": str(exc)})
    if images:
        probabilities = model.predict_proba(np.stack(images), batch_size, tta=tta)
        for position, row in zip(readable, probabilities):
            results[position]["predictions"] = top_k(row, model.class_names, k)
    return results


def main(argv=None):
    args = parse_args(argv)
    args.tta = None if args.tta == "none" else args.tta
    try:
        model, note = open_model(args.target, args.data_root)
        if note:
            print(f"note: {note}", file=sys.stderr)
        results = classify(model, args.images, args.top_k, args.tta, args.resize, args.batch_size)
    except (FileNotFoundError, CheckpointError, ConfigError, CorruptDataError, DownloadError, ValueError,
            ImportError) as exc:  # ImportError: Pillow is not installed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_MODEL
    if args.json:
        document = {"weights": str(model.weights), "tta": args.tta, "resize": args.resize, "results": results}
        print(json.dumps(document, indent=2))
    for result in results:
        if "error" in result:
            print(f"error: {result['error']}", file=sys.stderr)
        elif not args.json:
            shown = ", ".join(f"{p['class']} {p['probability']:.3f}" for p in result["predictions"])
            print(f"{result['image']}: {shown}")
    return EXIT_SOME_IMAGES_FAILED if any("error" in result for result in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
