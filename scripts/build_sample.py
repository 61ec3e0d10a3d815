"""Build the CIFAR-10 sample bundled with convnet (convnet/sample/cifar10_sample.npz.xz).

    python scripts/build_sample.py SOURCE_DIR OUT_FILE [--train-per-class 270] [--test-per-class 50]

SOURCE_DIR holds official-format batches (data_batch_1..5, test_batch, or a directory
containing cifar-10-batches-py/). The sample takes the first K images of each class from the
training batches, and likewise from the test batch, in file order, and stores them
class-interleaved: row 10*k + c is the k-th image of class c, so every prefix of 10*m rows is
balanced and CS231n-style splits (validation = the rows after training) stay balanced too.

The file is an uncompressed np.savez inside an xz (lzma) stream: lzma packs these images about
20% tighter than npz's zlib. Arrays: X_train, X_test uint8 (N, 3, 32, 32); y_train, y_test
int64 (N,); source_files (the batch file names); source_rows int64 (N_train + N_test, 2), the
training rows first, each (index into source_files, row within that file); description.
"""

import argparse
import io
import lzma
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from convnet.data import BATCH_FILES, CLASS_NAMES, TEST_BATCH, TRAIN_BATCHES, find_batches_dir, load_batch


def first_per_class(y, per_class, where):
    """Indices of the first ``per_class`` rows of each class of y, class-interleaved (see module doc)."""
    picks = []
    for label, name in enumerate(CLASS_NAMES):
        rows = np.flatnonzero(y == label)[:per_class]
        if len(rows) < per_class:
            raise SystemExit(f"error: {where} holds only {len(rows)} images of class {label} ({name}), "
                             f"{per_class} asked for")
        picks.append(rows)
    return np.stack(picks, axis=1).reshape(-1)  # (per_class, classes) -> row 10*k + c


def read_batches(batches_dir, names):
    """Images, labels and (file index, row) of the named batches, concatenated in order."""
    images, labels, sources = [], [], []
    for name in names:
        X, y = load_batch(batches_dir / name)  # the checked reader load_cifar10 is built on
        images.append(X)
        labels.append(y)
        sources.append(np.column_stack([np.full(len(y), BATCH_FILES.index(name)), np.arange(len(y))]))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(sources).astype(np.int64)


def write_xz_npz(path, arrays):
    """np.savez (uncompressed) wrapped in lzma preset 9, written to a temporary file and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    handle, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with lzma.open(tmp_name, "wb", preset=9) as f:
            f.write(buffer.getvalue())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; the sample is meant to be readable by all
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source_dir", type=Path, metavar="SOURCE_DIR", help="official-format CIFAR-10 batches")
    parser.add_argument("out_file", type=Path, metavar="OUT_FILE", help="output .npz.xz file")
    parser.add_argument("--train-per-class", type=int, default=270, help="training images per class (%(default)s)")
    parser.add_argument("--test-per-class", type=int, default=50, help="test images per class (%(default)s)")
    args = parser.parse_args(argv)
    for option in ("train_per_class", "test_per_class"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")

    batches_dir = find_batches_dir(args.source_dir)
    X_train, y_train, train_sources = read_batches(batches_dir, TRAIN_BATCHES)
    X_test, y_test, test_sources = read_batches(batches_dir, (TEST_BATCH,))
    train_rows = first_per_class(y_train, args.train_per_class, f"the training batches in {batches_dir}")
    test_rows = first_per_class(y_test, args.test_per_class, f"{batches_dir / TEST_BATCH}")

    description = (
        f"CIFAR-10 sample: the first {args.train_per_class} training and {args.test_per_class} test images of "
        "each class, in file order, stored class-interleaved (row 10*k + c is the k-th image of class c). "
        "source_rows[i] = (index into source_files, row in that file); training rows first."
    )
    arrays = {
        "X_train": np.ascontiguousarray(X_train[train_rows]),
        "y_train": y_train[train_rows],
        "X_test": np.ascontiguousarray(X_test[test_rows]),
        "y_test": y_test[test_rows],
        "source_files": np.array(BATCH_FILES),
        "source_rows": np.concatenate([train_sources[train_rows], test_sources[test_rows]]),
        "description": np.array(description),
    }
    write_xz_npz(args.out_file, arrays)
    print(f"wrote {args.out_file}: {len(train_rows)} training + {len(test_rows)} test images from {batches_dir}, "
          f"{args.out_file.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
