"""The official CIFAR-10 python batches on disk: where they live and how they are read.

Images are uint8 arrays of shape (N, 3, 32, 32) (NCHW, the layout of the layers), labels
int64 (N,) in 0..9 (see :data:`CLASS_NAMES`). The data lives in ``<root>/cifar-10-batches-py/``
in the official "python version" layout, with ``root`` = ``$CONVNET_DATA`` or
``~/.cache/convnet``.
"""

import codecs
import os
import pickle
from pathlib import Path

import numpy as np

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_BATCH = "test_batch"
BATCH_FILES = TRAIN_BATCHES + (TEST_BATCH,)
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (3, 32, 32)  # (C, H, W); a row of an official batch is the flattened image


class CorruptDataError(ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file."""


# ---------------------------------------------------------------------------
# where the data lives
# ---------------------------------------------------------------------------


def default_data_root():
    """``$CONVNET_DATA`` if set (and not empty), else ``~/.cache/convnet``."""
    configured = os.environ.get("CONVNET_DATA", "")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "convnet"


def resolve_root(root):
    """``root`` as a Path (``~`` expanded), or :func:`default_data_root` when it is None."""
    return default_data_root() if root is None else Path(root).expanduser()


def missing_batch_files(directory):
    """The names in :data:`BATCH_FILES` that are not files in ``directory``."""
    return [name for name in BATCH_FILES if not (directory / name).is_file()]


def find_batches_dir(root=None):
    """The directory holding the batch files: ``root/cifar-10-batches-py`` or ``root`` itself.

    A directory counts once it holds any batch file, so that a missing one is then reported
    by :func:`load_cifar10` as :class:`CorruptDataError` naming it. Raises FileNotFoundError,
    saying which files were expected where and how to get them, when neither place has any.
    """
    root = resolve_root(root)
    for candidate in (root / BATCHES_DIRNAME, root):
        if candidate.is_dir() and len(missing_batch_files(candidate)) < len(BATCH_FILES):
            return candidate
    raise FileNotFoundError(
        f"CIFAR-10 not found: expected the files {', '.join(BATCH_FILES)} in {root / BATCHES_DIRNAME} "
        f"(or directly in {root}). Download them with `python -m convnet.data download --root {root}` "
        f"(or convnet.data.download_cifar10({str(root)!r})), or extract the official {ARCHIVE_NAME} "
        f"({CIFAR10_URL}) there. Without a root, the data is looked for in $CONVNET_DATA, "
        "else ~/.cache/convnet."
    )


# ---------------------------------------------------------------------------
# reading the official python batches
# ---------------------------------------------------------------------------

# The functions numpy's own pickles call to rebuild arrays and scalars, taken from
# __reduce__ so that no private numpy module has to be imported by name.
_NUMPY_RECONSTRUCT = np.ndarray(0).__reduce__()[0]
_NUMPY_SCALAR = np.int64(0).__reduce__()[0]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: a pickle can call any importable function, so a
    batch from an untrusted place may name just the few globals a dict of numpy arrays,
    lists and bytes needs (bytes appear as ``_codecs.encode`` calls in protocol-2 pickles)."""

    ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,  # numpy 1.x pickles (official files)
        ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,  # numpy >= 2 pickles
        ("numpy.core.multiarray", "scalar"): _NUMPY_SCALAR,
        ("numpy._core.multiarray", "scalar"): _NUMPY_SCALAR,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch never needs") from None


def check_labels(labels, num_images, where):
    """Labels as int64 (N,), or CorruptDataError saying how they are wrong."""
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise CorruptDataError(f"{where}: the labels are not a flat list of integers ({exc})") from exc
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise CorruptDataError(
            f"{where}: the labels must be a flat list of integers, got {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != num_images:
        raise CorruptDataError(f"{where}: {len(labels)} labels for {num_images} images")
    if num_images and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise CorruptDataError(
            f"{where}: labels must lie in 0..{NUM_CLASSES - 1}, got values from {labels.min()} to {labels.max()}"
        )
    return labels.astype(np.int64)


def load_batch(path):
    """One official CIFAR-10 python batch -> (X uint8 (N, 3, 32, 32), y int64 (N,)).

    N is taken from the file. A missing, unreadable or inconsistent file raises
    :class:`CorruptDataError` naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptDataError(f"{path} is missing")
    try:
        with open(path, "rb") as f:
            # The official files are Python-2 pickles: 'bytes' keeps their str keys and the
            # array payload as bytes (latin1 would work too); both key types are accepted below.
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged pickles fail with many exception types
        raise CorruptDataError(
            f"{path} is not a readable CIFAR-10 batch: {type(exc).__name__}: {exc} "
            "(a truncated or damaged file? fetch it again)"
        ) from exc
    if not isinstance(batch, dict):
        raise CorruptDataError(f"{path} holds a {type(batch).__name__}, not the dict of a CIFAR-10 batch")
    batch = {(key.decode("latin1") if isinstance(key, bytes) else key): value for key, value in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise CorruptDataError(f"{path} has no {key!r} entry (it has {sorted(map(str, batch))})")
    data = batch["data"]
    row_size = int(np.prod(IMAGE_SHAPE))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row_size:
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CorruptDataError(f"{path}: 'data' must be a uint8 array of shape (N, {row_size}), got {got}")
    if data.shape[0] == 0:
        raise CorruptDataError(f"{path} holds no images")
    labels = check_labels(batch["labels"], data.shape[0], str(path))
    # A row is the red plane, then green, then blue, each 32x32 row-major: exactly NCHW.
    return data.reshape((data.shape[0],) + IMAGE_SHAPE), labels


def load_cifar10(root=None):
    """(X_train, y_train, X_test, y_test) from the official batches under ``root``.

    X: uint8 (N, 3, 32, 32); y: int64 (N,). Training rows are data_batch_1..5 in order,
    with as many rows as each file holds. Every file is read and checked before anything
    is returned; a bad one raises :class:`CorruptDataError`, a missing directory FileNotFoundError.
    """
    batches_dir = find_batches_dir(root)
    missing = missing_batch_files(batches_dir)
    if missing:
        raise CorruptDataError(
            f"{batches_dir} is incomplete: {', '.join(missing)} missing (expected {', '.join(BATCH_FILES)}); "
            "copy the missing files from the official archive, or delete the directory and download again"
        )
    train = [load_batch(batches_dir / name) for name in TRAIN_BATCHES]
    X_test, y_test = load_batch(batches_dir / TEST_BATCH)
    X_train = np.concatenate([X for X, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return X_train, y_train, X_test, y_test


def load_CIFAR10(ROOT):  # noqa: N802, N803 - CS231n's names
    """CS231n's ``load_CIFAR10``: (Xtr, Ytr, Xte, Yte) with X float64 (N, 32, 32, 3) (NHWC, as
    CS231n returns it) and Y int64 (N,). ``ROOT`` is the batches directory or the data root
    holding it; every file is checked as :func:`load_cifar10` checks it."""
    X_train, y_train, X_test, y_test = load_cifar10(ROOT)
    X_train, X_test = (X.transpose(0, 2, 3, 1).astype(np.float64) for X in (X_train, X_test))
    return X_train, y_train, X_test, y_test


def load_CIFAR_batch(filename):  # noqa: N802 - CS231n's name
    """CS231n's ``load_CIFAR_batch``: one batch file as (X float64 (N, 32, 32, 3), Y int64 (N,)),
    checked as :func:`load_batch` checks it."""
    X, y = load_batch(filename)
    return X.transpose(0, 2, 3, 1).astype(np.float64), y
