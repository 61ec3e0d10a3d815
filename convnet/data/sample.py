"""The CIFAR-10 sample bundled with convnet: 3200 real images, enough to train without a download."""

import functools
import io
import lzma
from pathlib import Path

import numpy as np

from convnet.data.cifar10 import IMAGE_SHAPE, CorruptDataError, check_labels
from convnet.data.splits import prepare_splits

SAMPLE_PATH = Path(__file__).parent.parent / "sample" / "cifar10_sample.npz.xz"


@functools.lru_cache(maxsize=1)
def load_sample():
    """(X_train, y_train, X_test, y_test) of the bundled CIFAR-10 sample (real images).

    2700 training images (the first 270 of each class in the official training batches)
    and 500 test images (the first 50 of each class), uint8 (N, 3, 32, 32) and int64 (N,).
    Rows are class-interleaved (row 10*k + c is the k-th image of class c), so any prefix
    of 10*m rows holds m images per class. Built by scripts/build_sample.py. The arrays are
    read-only and cached: decompressing takes about a second.
    """
    try:
        with lzma.open(SAMPLE_PATH, "rb") as f:
            raw = f.read()  # np.load needs a seekable file; lzma seeks backwards by decompressing again
        with np.load(io.BytesIO(raw), allow_pickle=False) as arrays:
            X_train, y_train = arrays["X_train"], arrays["y_train"]
            X_test, y_test = arrays["X_test"], arrays["y_test"]
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"the bundled sample {SAMPLE_PATH} is missing; reinstall convnet, or rebuild it "
                                "with scripts/build_sample.py") from exc
    except (lzma.LZMAError, EOFError, ValueError, KeyError, OSError) as exc:
        raise CorruptDataError(f"the bundled sample {SAMPLE_PATH} is damaged ({exc}); reinstall convnet") from exc
    for name, X, y in (("X_train", X_train, y_train), ("X_test", X_test, y_test)):
        if X.dtype != np.uint8 or X.shape[1:] != IMAGE_SHAPE:
            raise CorruptDataError(f"{SAMPLE_PATH}: {name} must be uint8 (N, 3, 32, 32), "
                                   f"got {X.dtype} {X.shape}")
        check_labels(y, len(X), f"{SAMPLE_PATH} ({name})")
    arrays = (X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64))
    for array in arrays:
        array.setflags(write=False)
    return arrays


def get_sample_data(num_training=None, num_validation=500, num_test=None, normalization="mean_image",
                    dtype=np.float32):
    """Like :func:`get_cifar10_data`, on the bundled sample (defaults: 2200 / 500 / 500, balanced)."""
    return prepare_splits(*load_sample(), num_training=num_training, num_validation=num_validation,
                          num_test=num_test, normalization=normalization, dtype=dtype,
                          source=f"the bundled sample {SAMPLE_PATH}")

