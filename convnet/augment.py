"""Per-minibatch data augmentation on (N, C, H, W) images: random crops, flips, cutout.

Every function takes a ``np.random.Generator``, so the same seed gives the same batch,
returns a new array of the input's shape and dtype, and draws all its random numbers
for the whole batch at once (no Python loop over images). To augment training batches,
pass e.g. ``functools.partial(augment_batch, crop_padding=4, cutout_size=8)`` to the
Solver as ``augment`` (it calls ``augment(X_batch, rng)``).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convnet.checks import require_int, require_ndim


def _check_images(X):
    X = np.asarray(X)
    require_ndim("X", X, 4, "(N, C, H, W)")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    return X


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def random_crop(X, rng, padding=4):
    """Zero-pad each image by ``padding`` pixels on every side and cut a random H x W window.

    X: (N, C, H, W). Each image gets its own offset (0..2*padding in each direction), so
    it is shifted by up to ``padding`` pixels; padding=0 returns an unchanged copy.
    With normalised (zero-mean) inputs the zero border is the mean colour.
    """
    X = _check_images(X)
    _check_rng(rng)
    padding = require_int("padding", padding, 0)
    if padding == 0:
        return X.copy()
    N, _, H, W = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    # windows[n, c, i, j] is the H x W view of padded[n, c] whose top-left corner is (i, j).
    windows = sliding_window_view(padded, (H, W), axis=(2, 3))
    top = rng.integers(0, 2 * padding + 1, size=N)
    left = rng.integers(0, 2 * padding + 1, size=N)
    # The advanced indices (arange, top, left) are split by a slice, so their (N,) axis
    # comes first: the result is (N, C, H, W), one window per image, copied out.
    return windows[np.arange(N), :, top, left]


def random_flip(X, rng):
    """Mirror each image of X (N, C, H, W) left-right with probability 1/2."""
    X = _check_images(X)
    _check_rng(rng)
    flip = rng.random(X.shape[0]) < 0.5
    out = X.copy()
    out[flip] = X[flip, :, :, ::-1]
    return out


def cutout(X, rng, size):
    """Zero one size x size square per image of X (N, C, H, W), in all channels (DeVries & Taylor 2017).

    The square's centre is uniform over the image, so near a border only the part of the
    square inside the image is zeroed. Rows top..top+size-1 with top = centre - size // 2
    (likewise for columns). size=0 returns an unchanged copy.
    """
    X = _check_images(X)
    _check_rng(rng)
    size = require_int("size", size, 0)
    if size == 0:
        return X.copy()
    N, _, H, W = X.shape
    top = rng.integers(0, H, size=N) - size // 2
    left = rng.integers(0, W, size=N) - size // 2
    rows = np.arange(H)
    cols = np.arange(W)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + size)  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + size)  # (N, W)
    square = in_rows[:, :, None] & in_cols[:, None, :]  # (N, H, W)
    return np.where(square[:, None], X.dtype.type(0), X)


def augment_batch(X, rng, crop_padding=4, flip=True, cutout_size=0):
    """Random crop (``crop_padding`` > 0), then flip (``flip``), then cutout (``cutout_size`` > 0).

    X: (N, C, H, W); rng: np.random.Generator. Returns a new array of X's shape and dtype.
    """
    X = _check_images(X)
    _check_rng(rng)
    crop_padding = require_int("crop_padding", crop_padding, 0)
    cutout_size = require_int("cutout_size", cutout_size, 0)
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError(f"flip must be True or False, got {flip!r}")
    out = random_crop(X, rng, crop_padding) if crop_padding else X.copy()
    if flip:
        out = random_flip(out, rng)
    if cutout_size:
        out = cutout(out, rng, cutout_size)
    return out
