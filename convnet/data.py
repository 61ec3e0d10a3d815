"""CIFAR-10: download and verify, load into memory, split and normalise; the bundled sample.

Images are uint8 arrays of shape (N, 3, 32, 32) (NCHW, the layout of the layers), labels
int64 (N,) in 0..9 (see :data:`CLASS_NAMES`). The data lives in ``<root>/cifar-10-batches-py/``
in the official "python version" layout, with ``root`` = ``$CONVNET_DATA`` or
``~/.cache/convnet``. Get it with ``python -m convnet.data download`` (or
:func:`download_cifar10`), or copy the official files there by hand.

Augmentation lives in :mod:`convnet.augment`.
"""

import argparse
import codecs
import functools
import gzip
import hashlib
import http.client
import io
import lzma
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from tqdm.auto import tqdm

from convnet.checks import require_int

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
NORMALIZATIONS = ("mean_image", "per_channel", None)
SAMPLE_PATH = Path(__file__).parent / "sample" / "cifar10_sample.npz.xz"

DOWNLOAD_CHUNK_BYTES = 1 << 20


class CorruptDataError(ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file."""


class DownloadError(RuntimeError):
    """The archive could not be fetched or failed its checksum; the message says what to do by hand."""


class UnsafeArchiveError(ValueError):
    """The archive holds a member that could write outside the target directory (or is not a plain file)."""


# ---------------------------------------------------------------------------
# where the data lives
# ---------------------------------------------------------------------------


def default_data_root():
    """``$CONVNET_DATA`` if set (and not empty), else ``~/.cache/convnet``."""
    configured = os.environ.get("CONVNET_DATA", "")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "convnet"


def _root_or_default(root):
    return default_data_root() if root is None else Path(root).expanduser()


def _missing_batch_files(directory):
    return [name for name in BATCH_FILES if not (directory / name).is_file()]


def find_batches_dir(root=None):
    """The directory holding the batch files: ``root/cifar-10-batches-py`` or ``root`` itself.

    A directory counts once it holds any batch file, so that a missing one is then reported
    by :func:`load_cifar10` as :class:`CorruptDataError` naming it. Raises FileNotFoundError,
    saying which files were expected where and how to get them, when neither place has any.
    """
    root = _root_or_default(root)
    for candidate in (root / BATCHES_DIRNAME, root):
        if candidate.is_dir() and len(_missing_batch_files(candidate)) < len(BATCH_FILES):
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


def _check_labels(labels, num_images, where):
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
    labels = _check_labels(batch["labels"], data.shape[0], str(path))
    # A row is the red plane, then green, then blue, each 32x32 row-major: exactly NCHW.
    return data.reshape((data.shape[0],) + IMAGE_SHAPE), labels


def load_cifar10(root=None):
    """(X_train, y_train, X_test, y_test) from the official batches under ``root``.

    X: uint8 (N, 3, 32, 32); y: int64 (N,). Training rows are data_batch_1..5 in order,
    with as many rows as each file holds. Every file is read and checked before anything
    is returned; a bad one raises :class:`CorruptDataError`, a missing directory FileNotFoundError.
    """
    batches_dir = find_batches_dir(root)
    missing = _missing_batch_files(batches_dir)
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


# ---------------------------------------------------------------------------
# download, checksum, safe extraction
# ---------------------------------------------------------------------------


def _complete_batches_dir(root):
    for candidate in (root / BATCHES_DIRNAME, root):
        if candidate.is_dir() and not _missing_batch_files(candidate):
            return candidate
    return None


def _manual_instructions(root):
    return (
        f"To install CIFAR-10 by hand, download {CIFAR10_URL} (MD5 {CIFAR10_MD5}) elsewhere and either put it "
        f"at {root / ARCHIVE_NAME} and run `python -m convnet.data download --root {root}` again (it verifies "
        f"and extracts it), or extract it yourself so that the files {', '.join(BATCH_FILES)} are in "
        f"{root / BATCHES_DIRNAME}/. To keep the data somewhere else, set CONVNET_DATA to that directory "
        "(or pass root=... / --root)."
    )


def file_md5(path):
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url, archive, md5, progress, timeout):
    """Download ``url`` to ``archive``.part, check the MD5, then rename to ``archive``.

    The rename happens only after the checksum matches, so a file named ``archive`` is
    always complete; anything that goes wrong removes the .part file.
    """
    part = archive.with_name(archive.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            with tqdm(total=int(length) if length else None, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=archive.name, disable=not progress) as bar:
                while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"could not download {url}: {reason}. {_manual_instructions(archive.parent)}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != md5:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"the file downloaded from {url} has MD5 {actual}, expected {md5}: it is truncated or not the "
            f"official archive, so it was deleted. Try again later. {_manual_instructions(archive.parent)}"
        )
    os.replace(part, archive)


def _check_member(member):
    """Raise UnsafeArchiveError unless ``member`` is a plain file or directory with a relative,
    '..'-free path: anything else could write outside the directory it is extracted to."""
    name = member.name
    if not name:
        raise UnsafeArchiveError("refusing an archive member with an empty name")
    windows = PureWindowsPath(name)  # C:\x or \\server\x: absolute on Windows
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: absolute path")
    if ".." in PurePosixPath(name).parts or ".." in windows.parts:
        raise UnsafeArchiveError(f"refusing archive member {name!r}: its path leaves the target directory ('..')")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(f"refusing archive member {name!r}: a link (to {member.linkname!r})")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"refusing archive member {name!r}: not a regular file or directory "
                                 f"(tar type {member.type!r})")


def extract_archive(archive, root):
    """Extract ``archive``'s ``cifar-10-batches-py/`` into ``root``, safely and all-or-nothing.

    Every member is checked before anything is written (see :class:`UnsafeArchiveError`);
    extraction goes to a temporary directory inside ``root`` that is renamed into place only
    once complete, so a crash never leaves a half-extracted ``cifar-10-batches-py``.
    Returns the batches directory.
    """
    archive, root = Path(archive), Path(root)
    target = root / BATCHES_DIRNAME
    staging = Path(tempfile.mkdtemp(prefix=".extract-cifar-10-", dir=root))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member)
                for member in members:
                    # Written by hand rather than tar.extract: no owners, modes or times from
                    # the archive, and nothing but the checked names is ever created.
                    path = staging / member.name
                    if member.isdir():
                        path.mkdir(parents=True, exist_ok=True)
                        continue
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as source, open(path, "wb") as out:
                        shutil.copyfileobj(source, out, DOWNLOAD_CHUNK_BYTES)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
            raise CorruptDataError(f"{archive} is not a readable tar archive: {exc}") from exc
        missing = _missing_batch_files(staging / BATCHES_DIRNAME)
        if missing:
            raise CorruptDataError(
                f"{archive} does not hold {', '.join(f'{BATCHES_DIRNAME}/{name}' for name in missing)}; "
                "is it the CIFAR-10 python version?"
            )
        os.rename(staging / BATCHES_DIRNAME, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def download_cifar10(root=None, url=CIFAR10_URL, progress=True, md5=CIFAR10_MD5, timeout=60):
    """Make sure ``root/cifar-10-batches-py`` holds the official batches; returns that directory.

    Nothing is fetched when the batches are already there, and an existing
    ``root/cifar-10-python.tar.gz`` is verified and extracted instead of downloaded again.
    The download shows a tqdm bar (``progress``), must match ``md5`` and is extracted with
    :func:`extract_archive`. Raises :class:`DownloadError` (network trouble or a checksum
    mismatch; the message explains how to place the files by hand), :class:`UnsafeArchiveError`,
    or FileExistsError for an incomplete ``cifar-10-batches-py`` that would be overwritten.
    ``timeout`` is in seconds, per network operation.
    """
    root = _root_or_default(root)
    existing = _complete_batches_dir(root)
    if existing is not None:
        return existing
    target = root / BATCHES_DIRNAME
    if target.exists():
        raise FileExistsError(
            f"{target} exists but lacks {', '.join(_missing_batch_files(target))}; complete it by hand, "
            "or delete it and download again"
        )
    root.mkdir(parents=True, exist_ok=True)
    archive = root / ARCHIVE_NAME
    if archive.is_file():
        actual = file_md5(archive)
        if actual != md5:
            raise DownloadError(
                f"{archive} has MD5 {actual}, expected {md5}: it is damaged or not the official archive. "
                "Delete it and download again."
            )
    else:
        _fetch(url, archive, md5, progress, timeout)
    return extract_archive(archive, root)


# ---------------------------------------------------------------------------
# splits and normalisation
# ---------------------------------------------------------------------------


def _require_images(name, X, y_name, y):
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"{y_name} must have shape ({X.shape[0]},) to match {name} of shape {X.shape}, "
                         f"got {y.shape}")
    return X, y


def _require_float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _channel_mean_std(X, rows_per_chunk=1000):
    """Per-channel mean and (biased) std of X (N, C, H, W) in float64, each (C, 1, 1).

    The squared deviations are summed a chunk of rows at a time, so that no float64
    copy of the whole training set (1.2 GB for CIFAR-10) is ever made.
    """
    mean = X.mean(axis=(0, 2, 3), dtype=np.float64, keepdims=True)[0]
    squared = np.zeros_like(mean)
    for start in range(0, len(X), rows_per_chunk):
        deviation = X[start : start + rows_per_chunk] - mean
        squared += np.square(deviation).sum(axis=(0, 2, 3), keepdims=True)[0]
    count = X.shape[0] * X.shape[2] * X.shape[3]
    return mean, np.sqrt(squared / count)


def normalization_stats(X_train, normalization="mean_image", dtype=np.float32):
    """The statistics ``normalization`` needs, computed from X_train (N, C, H, W).

    Returns {'normalization'} plus, for 'mean_image', 'mean' (C, H, W) and, for
    'per_channel', 'mean' and 'std' (C, 1, 1), in ``dtype``; :func:`normalize_images` applies them.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    dtype = _require_float_dtype(dtype)
    stats = {"normalization": normalization}
    if normalization == "mean_image":
        stats["mean"] = X_train.mean(axis=0, dtype=np.float64).astype(dtype)
    elif normalization == "per_channel":
        mean, std = _channel_mean_std(X_train)
        # A constant channel carries no information: dividing it by 1 leaves it zero-centred
        # instead of filling it with NaN.
        stats["mean"] = mean.astype(dtype)
        stats["std"] = np.where(std > 0, std, 1.0).astype(dtype)
    return stats


def normalize_images(X, splits_or_stats, dtype=np.float32):
    """Convert images X (N, C, H, W) to ``dtype`` and normalise them like the training set.

    ``splits_or_stats``: the dict from :func:`prepare_splits` (or :func:`normalization_stats`),
    holding 'normalization' and the training 'mean' (and 'std'). Returns a new array.
    """
    dtype = _require_float_dtype(dtype)
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be 4-D (N, C, H, W), got shape {X.shape}")
    if "normalization" not in splits_or_stats:
        raise ValueError(f"splits_or_stats has no 'normalization' key (got keys {sorted(splits_or_stats)})")
    normalization = splits_or_stats["normalization"]
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"splits_or_stats['normalization'] must be one of {NORMALIZATIONS}, got {normalization!r}")
    out = X.astype(dtype)  # always a copy: the caller's images stay untouched
    if normalization is None:
        return out
    expected = {"mean_image": X.shape[1:], "per_channel": (X.shape[1], 1, 1)}[normalization]
    needed = ("mean",) if normalization == "mean_image" else ("mean", "std")
    for key in needed:
        if key not in splits_or_stats:
            raise ValueError(f"splits_or_stats has no {key!r} array, which {normalization!r} needs")
        if np.shape(splits_or_stats[key]) != expected:
            raise ValueError(f"splits_or_stats[{key!r}] must have shape {expected} for X of shape {X.shape} "
                             f"and normalization {normalization!r}, got {np.shape(splits_or_stats[key])}")
    out -= np.asarray(splits_or_stats["mean"], dtype=dtype)
    if normalization == "per_channel":
        out /= np.asarray(splits_or_stats["std"], dtype=dtype)
    return out


def prepare_splits(X_train, y_train, X_test, y_test, num_training=None, num_validation=1000, num_test=None,
                   normalization="mean_image", dtype=np.float32, source=None):
    """Training/validation/test splits, normalised with training statistics (CS231n style).

    Training = the first ``num_training`` rows of X_train (None: all rows left after validation);
    validation = the ``num_validation`` rows right after them; test = the first ``num_test``
    rows of X_test (None: all). normalization: 'mean_image' subtracts the per-pixel training
    mean, 'per_channel' subtracts the per-channel training mean and divides by the per-channel
    training std, None only converts. ``source`` (e.g. a path) names the data in errors.

    Returns a dict with X_train, y_train, X_val, y_val, X_test, y_test (X in ``dtype``,
    y int64), class_names, normalization and, when normalising, mean (and std).
    """
    X_train, y_train = _require_images("X_train", X_train, "y_train", y_train)
    X_test, y_test = _require_images("X_test", X_test, "y_test", y_test)
    if X_test.shape[1:] != X_train.shape[1:]:
        raise ValueError(f"X_test images have shape {X_test.shape[1:]} but X_train images {X_train.shape[1:]}")
    dtype = _require_float_dtype(dtype)
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    num_validation = require_int("num_validation", num_validation, 0)
    from_source = f" from {source}" if source else ""
    available = len(X_train)
    if num_training is None:
        num_training = available - num_validation
        if num_training < 1:
            raise ValueError(f"num_validation={num_validation} leaves no training images: the training set"
                             f"{from_source} holds {available} images")
    num_training = require_int("num_training", num_training, 1)
    if num_training + num_validation > available:
        raise ValueError(
            f"num_training={num_training} + num_validation={num_validation} = {num_training + num_validation} "
            f"training images requested, but the training set{from_source} holds only {available}; ask for fewer "
            "(num_training=None uses every image left after validation)"
        )
    num_test = len(X_test) if num_test is None else require_int("num_test", num_test, 0)
    if num_test > len(X_test):
        raise ValueError(f"num_test={num_test} test images requested, but the test set{from_source} holds only "
                         f"{len(X_test)}; ask for fewer (num_test=None uses them all)")

    X_tr = X_train[:num_training]
    X_val = X_train[num_training : num_training + num_validation]
    stats = normalization_stats(X_tr, normalization, dtype)  # training rows only: no peeking at val/test
    splits = {
        "X_train": normalize_images(X_tr, stats, dtype),
        "y_train": y_train[:num_training].astype(np.int64),
        "X_val": normalize_images(X_val, stats, dtype),
        "y_val": y_train[num_training : num_training + num_validation].astype(np.int64),
        "X_test": normalize_images(X_test[:num_test], stats, dtype),
        "y_test": y_test[:num_test].astype(np.int64),
        "class_names": list(CLASS_NAMES),
    }
    splits.update(stats)
    return splits


def get_cifar10_data(root=None, num_training=49000, num_validation=1000, num_test=1000,
                     normalization="mean_image", dtype=np.float32):
    """CS231n's ``get_CIFAR10_data``: :func:`load_cifar10` then :func:`prepare_splits`."""
    batches_dir = find_batches_dir(root)
    return prepare_splits(*load_cifar10(batches_dir), num_training=num_training, num_validation=num_validation,
                          num_test=num_test, normalization=normalization, dtype=dtype, source=batches_dir)


# ---------------------------------------------------------------------------
# the bundled sample
# ---------------------------------------------------------------------------


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
        _check_labels(y, len(X), f"{SAMPLE_PATH} ({name})")
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


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------


def _class_table(columns):
    """Lines of a per-class count table; ``columns`` maps a heading to labels (N,)."""
    lines = ["class       " + "".join(f"{heading:>8}" for heading in columns)]
    counts = {heading: np.bincount(y, minlength=NUM_CLASSES) for heading, y in columns.items()}
    for label, name in enumerate(CLASS_NAMES):
        lines.append(f"{label} {name:<10}" + "".join(f"{counts[h][label]:>8}" for h in columns))
    lines.append("total       " + "".join(f"{len(y):>8}" for y in columns.values()))
    return lines


def _info(root, sample):
    if sample:
        _, y_train, _, y_test = load_sample()
        lines = [f"bundled sample: {SAMPLE_PATH}"]
    else:
        batches_dir = find_batches_dir(root)
        labels = {name: load_batch(batches_dir / name)[1] for name in BATCH_FILES}  # checks every file
        y_train = np.concatenate([labels[name] for name in TRAIN_BATCHES])
        y_test = labels[TEST_BATCH]
        lines = [f"CIFAR-10 batches: {batches_dir}"]
        lines += [f"  {name:<13} {len(y):>6} images" for name, y in labels.items()]
    return lines + _class_table({"train": y_train, "test": y_test})


def main(argv=None):
    """``python -m convnet.data {download,info}``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m convnet.data",
        description="Get CIFAR-10 (the official python version) onto disk and check it.",
        epilog=f"The data root defaults to $CONVNET_DATA, else ~/.cache/convnet; the batches live in "
               f"ROOT/{BATCHES_DIRNAME}/. Offline? Put {ARCHIVE_NAME} in ROOT and run download.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    download = commands.add_parser(
        "download", help="download, verify (MD5) and extract CIFAR-10 (skipped when already there)",
        description=f"Download {CIFAR10_URL} to ROOT, check its MD5 and extract ROOT/{BATCHES_DIRNAME}/.")
    download.add_argument("--root", type=Path, default=None, help="data root (default: $CONVNET_DATA or "
                                                                   "~/.cache/convnet)")
    download.add_argument("--url", default=CIFAR10_URL, help="where to download from (default: %(default)s)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    info = commands.add_parser("info", help="check the data and print image counts per file and per class",
                               description="Load every batch (checking it) and print counts per split and class.")
    which = info.add_mutually_exclusive_group()
    which.add_argument("--root", type=Path, default=None, help="data root or batches directory (default: "
                                                                "$CONVNET_DATA or ~/.cache/convnet)")
    which.add_argument("--sample", action="store_true", help="describe the sample bundled with convnet instead")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print(f"CIFAR-10 is in {download_cifar10(args.root, url=args.url, progress=not args.quiet)}")
        else:
            print("\n".join(_info(args.root, args.sample)))
    except (OSError, CorruptDataError, DownloadError, UnsafeArchiveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
