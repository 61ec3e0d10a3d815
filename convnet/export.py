"""Export a trained ConvNet to ONNX: raw uint8 images (N, H, W, 3) in, logits and probabilities out.

    python -m convnet.export runs/quickstart/20261126-101500 model.onnx
    python -m convnet.export runs/quickstart/20261126-101500/best.npz model.onnx --check

The graph (convnet.onnx_export) holds the normalisation and runs batch norm with its running
statistics, so deploying it needs only an ONNX runtime.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from convnet.checkpoint import CheckpointError
from convnet.options import ConfigError
from convnet.data import CorruptDataError, DownloadError
from convnet import onnx_export
from convnet.inference import open_model

EPILOG = f"""\
TARGET is a run directory (its best.npz is used, else checkpoint.npz) or a .npz checkpoint.
The graph: opset {onnx_export.OPSET}; input "{onnx_export.INPUT_NAME}", uint8 (N, H, W, 3) (N free); outputs
"{onnx_export.LOGITS}" and "{onnx_export.PROBABILITIES}", float32 (N, num_classes); metadata "class_names" (a JSON list).

exit status: 0 written; 1 the model cannot be exported (a block without an ONNX form, named),
or --check found a difference; 2 bad arguments, the model could not be loaded, or onnx is
not installed (pip install "convnet[onnx]").
"""


def check_against_convnet(trained, path, images):
    """Max abs difference between onnxruntime's logits for ``path`` and convnet's, on uint8 ``images``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images})
    return float(np.max(np.abs(logits - trained.logits(images).astype(np.float32))))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convnet.export", description=__doc__.splitlines()[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument("output", type=Path, metavar="MODEL.onnx")
    parser.add_argument("--check", action="store_true",
                        help="run the file in onnxruntime on the bundled sample's test images and compare its "
                             "logits with convnet's (fails above 1e-4)")
    parser.add_argument("--data-root", help="for an older checkpoint without its normalisation: where the "
                                            "run's training data lives")
    args = parser.parse_args(argv)
    try:
        trained, note = open_model(args.target, args.data_root)
    except (FileNotFoundError, CheckpointError, ConfigError, CorruptDataError, DownloadError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if note:
        print(f"note: {note}", file=sys.stderr)
    try:
        onnx_export.export(trained, args.output)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (onnx_export.ExportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} (opset {onnx_export.OPSET}; input {onnx_export.INPUT_NAME!r} uint8 "
          f"(N, {', '.join(map(str, trained.input_shape))}); outputs {onnx_export.LOGITS!r}, "
          f"{onnx_export.PROBABILITIES!r})")
    if args.check:
        from convnet.data import load_sample

        images = np.ascontiguousarray(load_sample()[2][:100].transpose(0, 2, 3, 1))
        if images.shape[1:] != trained.input_shape:
            print(f"error: --check uses 32x32 sample images; this model takes {trained.input_shape}", file=sys.stderr)
            return 1
        try:
            difference = check_against_convnet(trained, args.output, images)
        except ImportError:
            print(f"error: --check runs the file in onnxruntime, which is not installed: pip install "
                  f"\"convnet[onnx]\" (the file {args.output} was written)", file=sys.stderr)
            return 2
        print(f"check: max |logits difference| {difference:.2e} on {len(images)} sample images")
        if difference > 1e-4:
            print("error: the exported graph disagrees with convnet", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
