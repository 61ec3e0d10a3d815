"""Training/validation/test splits, normalised with statistics of the training rows only.

The public functions check their arguments once, at the door; the private helpers they
share (:func:`_statistics`, :func:`_normalized`) trust what they are given.
"""

import numpy as np

from convnet.checks import require_float_dtype, require_int, require_ndim
from convnet.data.cifar10 import CLASS_NAMES, find_batches_dir, load_cifar10
from convnet.options import not_one_of

NORMALIZATIONS = ("mean_image", "per_channel", None)
#: The training statistics each normalisation is computed from (arrays of the splits dict).
STATISTICS = {"mean_image": ("mean",), "per_channel": ("mean", "std"), None: ()}


def _check_normalization(name, normalization):
    if normalization not in NORMALIZATIONS:
        raise not_one_of(name, normalization, NORMALIZATIONS, label="argument")
    return normalization


def _check_images(name, X, y_name=None, y=None):
    """X as a 4-D array (and y as its (N,) labels, when given)."""
    X = np.asarray(X)
    require_ndim(name, X, 4, "(N, C, H, W)")
    if y_name is None:
        return X
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise ValueError(f"{y_name} must have shape ({X.shape[0]},) to match {name} of shape {X.shape}, "
                         f"got {y.shape}")
    return X, y


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


def _statistics(X_train, normalization, dtype):
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


def _normalized(X, stats, dtype):
    out = X.astype(dtype)  # always a copy: the caller's images stay untouched
    if stats["normalization"] is not None:
        out -= np.asarray(stats["mean"], dtype=dtype)
    if stats["normalization"] == "per_channel":
        out /= np.asarray(stats["std"], dtype=dtype)
    return out


def normalization_stats(X_train, normalization="mean_image", dtype=np.float32):
    """The statistics ``normalization`` needs, computed from X_train (N, C, H, W).

    Returns {'normalization'} plus, for 'mean_image', 'mean' (C, H, W) and, for
    'per_channel', 'mean' and 'std' (C, 1, 1), in ``dtype``; :func:`normalize_images` applies them.
    """
    return _statistics(_check_images("X_train", X_train), _check_normalization("normalization", normalization),
                       require_float_dtype("dtype", dtype))


def normalize_images(X, splits_or_stats, dtype=np.float32):
    """Convert images X (N, C, H, W) to ``dtype`` and normalise them like the training set.

    ``splits_or_stats``: the dict from :func:`prepare_splits` (or :func:`normalization_stats`),
    holding 'normalization' and the training 'mean' (and 'std'). Returns a new array.
    """
    dtype = require_float_dtype("dtype", dtype)
    X = _check_images("X", X)
    if "normalization" not in splits_or_stats:
        raise ValueError(f"splits_or_stats has no 'normalization' key (got keys {sorted(splits_or_stats)})")
    normalization = _check_normalization("splits_or_stats['normalization']", splits_or_stats["normalization"])
    if normalization is not None:
        expected = {"mean_image": X.shape[1:], "per_channel": (X.shape[1], 1, 1)}[normalization]
        for key in STATISTICS[normalization]:
            if key not in splits_or_stats:
                raise ValueError(f"splits_or_stats has no {key!r} array, which {normalization!r} needs")
            if np.shape(splits_or_stats[key]) != expected:
                raise ValueError(f"splits_or_stats[{key!r}] must have shape {expected} for X of shape {X.shape} "
                                 f"and normalization {normalization!r}, got {np.shape(splits_or_stats[key])}")
    return _normalized(X, splits_or_stats, dtype)


def prepare_splits(X_train, y_train, X_test, y_test, num_training=None, num_validation=1000, num_test=None,
                   normalization="mean_image", dtype=np.float32, source=None):
    """Training/validation/test splits, normalised with training statistics (CS231n style).

    Training = the first ``num_training`` rows of X_train (None: all rows left after validation);
    validation = the ``num_validation`` rows right after them (0: none, X_val and y_val empty: train on
    every image, and let the Solver keep its final state, ``result='final'``); test = the first ``num_test``
    rows of X_test (None: all). normalization: 'mean_image' subtracts the per-pixel training
    mean, 'per_channel' subtracts the per-channel training mean and divides by the per-channel
    training std, None only converts. ``source`` (e.g. a path) names the data in errors.

    Returns a dict with X_train, y_train, X_val, y_val, X_test, y_test (X in ``dtype``,
    y int64), class_names, normalization and, when normalising, mean (and std).
    """
    X_train, y_train = _check_images("X_train", X_train, "y_train", y_train)
    X_test, y_test = _check_images("X_test", X_test, "y_test", y_test)
    if X_test.shape[1:] != X_train.shape[1:]:
        raise ValueError(f"X_test images have shape {X_test.shape[1:]} but X_train images {X_train.shape[1:]}")
    dtype = require_float_dtype("dtype", dtype)
    _check_normalization("normalization", normalization)
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
    stats = _statistics(X_tr, normalization, dtype)  # training rows only: no peeking at val/test
    splits = {
        "X_train": _normalized(X_tr, stats, dtype),
        "y_train": y_train[:num_training].astype(np.int64),
        "X_val": _normalized(X_val, stats, dtype),
        "y_val": y_train[num_training : num_training + num_validation].astype(np.int64),
        "X_test": _normalized(X_test[:num_test], stats, dtype),
        "y_test": y_test[:num_test].astype(np.int64),
        "class_names": list(CLASS_NAMES),
    }
    splits.update(stats)
    return splits


def get_cifar10_data(root=None, num_training=49000, num_validation=1000, num_test=1000,
                     normalization="mean_image", dtype=np.float32):
    """CIFAR-10 from ``root`` (default ``$CONVNET_DATA``, else ``~/.cache/convnet``) split by
    :func:`prepare_splits`: :func:`~convnet.data.cifar10.load_cifar10` then the splits."""
    batches_dir = find_batches_dir(root)
    return prepare_splits(*load_cifar10(batches_dir), num_training=num_training, num_validation=num_validation,
                          num_test=num_test, normalization=normalization, dtype=dtype, source=batches_dir)


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000, subtract_mean=True, *,  # noqa: N802
                     root=None):
    """CS231n's ``get_CIFAR10_data``: a dict of X_train, y_train, X_val, y_val, X_test, y_test.

    X float64 (N, 3, 32, 32) with the training rows' mean image subtracted (``subtract_mean``),
    y int64 (N,); validation = the ``num_validation`` training rows after the first
    ``num_training``, test = the first ``num_test`` test rows, as in CS231n. The data is read
    from ``root`` if given, else ``$CONVNET_DATA``, else ``~/.cache/convnet`` (a
    FileNotFoundError says so and how to download it); CS231n's ``cs231n/datasets`` is not searched.
    """
    splits = get_cifar10_data(root, num_training=num_training, num_validation=num_validation, num_test=num_test,
                              normalization="mean_image" if subtract_mean else None, dtype=np.float64)
    return {key: splits[key] for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")}
