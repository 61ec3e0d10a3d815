"""Per-minibatch data augmentation on (N, C, H, W) images: random crops, flips, cutout.

Every function takes a ``np.random.Generator``, so the same seed gives the same batch,
returns a new array of the input's shape and dtype, and draws all its random numbers
for the whole batch at once (no Python loop over images). To augment training batches,
pass e.g. ``functools.partial(augment_batch, crop_padding=4, cutout_size=8)`` to the
Solver as ``augment`` (it calls ``augment(X_batch, rng)``, and ``augment(X_batch, rng,
indices=..., epoch=...)`` when the function takes those: the alternating flip needs them).
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convnet.checks import require_int, require_ndim

PAD_MODES = ("zeros", "reflect")
FLIPS = (False, True, "alternating")


def _check_images(X):
    X = np.asarray(X)
    require_ndim("X", X, 4, "(N, C, H, W)")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    return X


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def random_crop(X, rng, padding=4, pad_mode="zeros"):
    """Pad each image by ``padding`` pixels on every side and cut a random H x W window.

    X: (N, C, H, W). Each image gets its own offset (0..2*padding in each direction), so
    it is shifted by up to ``padding`` pixels; padding=0 returns an unchanged copy.
    pad_mode 'zeros': with normalised (zero-mean) inputs the zero border is the mean colour;
    'reflect': the border mirrors the image (without repeating the edge pixel; padding < H, W).
    """
    X = _check_images(X)
    _check_rng(rng)
    padding = require_int("padding", padding, 0)
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {list(PAD_MODES)}, got {pad_mode!r}")
    if padding == 0:
        return X.copy()
    N, _, H, W = X.shape
    if pad_mode == "reflect" and padding >= min(H, W):
        raise ValueError(f"padding={padding} with pad_mode 'reflect' must be less than the image side "
                         f"(X has shape {X.shape})")
    widths = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    padded = np.pad(X, widths, mode="reflect") if pad_mode == "reflect" else np.pad(X, widths)
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


def _image_bits(indices, seed):
    """One reproducible random bit per image index (a splitmix64 hash of the seed and the index): the
    same index and seed always give the same bit, so no state is needed to repeat them on a resume."""
    with np.errstate(over="ignore"):
        z = np.asarray(indices, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(63)).astype(bool)


def alternating_flip(X, indices, epoch, seed=0):
    """Mirror image ``indices[n]`` of X (N, C, H, W) in epoch ``epoch`` when its random bit (fixed per
    index and seed) differs from the epoch's parity: a random half in epoch 0, then every image
    mirrored in every other epoch relative to that, so each is seen both ways in any two epochs."""
    X = _check_images(X)
    indices = np.asarray(indices)
    if indices.shape != (X.shape[0],) or not np.issubdtype(indices.dtype, np.integer) or np.any(indices < 0):
        raise ValueError(f"indices must be ({X.shape[0]},) non-negative integers (the images' rows of the "
                         f"training set), got shape {indices.shape} and dtype {indices.dtype}")
    epoch = require_int("epoch", epoch, 0)
    seed = require_int("seed", seed, 0)
    flip = _image_bits(indices, seed) ^ bool(epoch % 2)
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


def augment_batch(X, rng, crop_padding=4, flip=True, cutout_size=0, pad_mode="zeros", indices=None, epoch=None,
                  seed=0):
    """Random crop (``crop_padding`` > 0, padded as ``pad_mode`` says), then flip (``flip``), then
    cutout (``cutout_size`` > 0).

    X: (N, C, H, W); rng: np.random.Generator. flip: True (a random half), False, or 'alternating'
    (see :func:`alternating_flip`: needs ``indices``, the images' rows of the training set, and the
    0-based ``epoch``; ``seed`` picks the per-image bits). Returns a new array of X's shape and dtype.
    """
    X = _check_images(X)
    _check_rng(rng)
    crop_padding = require_int("crop_padding", crop_padding, 0)
    cutout_size = require_int("cutout_size", cutout_size, 0)
    if not (isinstance(flip, (bool, np.bool_)) or flip == "alternating"):
        raise TypeError(f"flip must be True, False or 'alternating', got {flip!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {list(PAD_MODES)}, got {pad_mode!r}")
    if flip == "alternating" and (indices is None or epoch is None):
        raise ValueError("flip='alternating' needs the images' indices and the epoch (the Solver passes them)")
    out = random_crop(X, rng, crop_padding, pad_mode) if crop_padding else X.copy()
    if flip == "alternating":
        out = alternating_flip(out, indices, epoch, seed)
    elif flip:
        out = random_flip(out, rng)
    if cutout_size:
        out = cutout(out, rng, cutout_size)
    return out
