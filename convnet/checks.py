"""Argument validation shared by every public layer.

The Cython kernels run with bounds checks off, so everything they index must be
checked here first. Each helper raises ValueError/TypeError with a message that
names the argument, what was expected and what was given.
"""

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)


def as_float_array(name, x):
    """Return ``x`` as a float32/float64 ndarray; reject other dtypes with TypeError.

    Used for a layer's input ``x``, whose dtype is the dtype of the whole computation: an
    integer ``x`` is refused rather than guessed at (cast it with ``x.astype(np.float64)``).
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {x.dtype}"
                        + (f" (cast it, e.g. {name}.astype(np.float64))" if np.issubdtype(x.dtype, np.integer) else ""))
    return x


def as_float_like(name, value, x):
    """Return a layer parameter (w, b, gamma, beta) as an array for a computation in x's dtype.

    Integer arrays are cast to ``x.dtype``, as CS231n's numpy layers accept them (its notebooks
    pass ``gamma = np.array([3, 4, 5])`` and ``b = np.array([0, 128])``); float arrays are
    returned unchanged, and any other dtype is a TypeError naming ``name``.
    """
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.integer):
        return value.astype(x.dtype)
    return as_float_array(name, value)


def require_float_dtype(name, dtype):
    """Return ``np.dtype(dtype)``, which must be float32 or float64 (TypeError otherwise)."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def require_ndim(name, x, ndim, layout=""):
    """Raise ValueError unless ``x.ndim == ndim``; ``layout`` (e.g. "(N, C, H, W)") helps the reader."""
    if x.ndim != ndim:
        described = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {ndim}-D{described}, got shape {x.shape}")


def require_shape(name, x, shape):
    """Raise ValueError unless ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def require_same_dtype(name, x, reference_name, reference):
    """Raise TypeError unless ``x`` has the dtype of ``reference`` (no silent casts)."""
    if x.dtype != reference.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but {reference_name} has dtype {reference.dtype}; "
            "cast one of them so they match"
        )


def require_param(params, params_name, key):
    """Return ``params[key]`` or raise ValueError naming the missing key."""
    if not isinstance(params, dict):
        raise TypeError(f"{params_name} must be a dict, got {type(params).__name__}")
    if key not in params:
        raise ValueError(f"{params_name} is missing the key {key!r} (got keys {sorted(params)})")
    return params[key]


def require_int(name, value, minimum):
    """Return ``value`` as int, raising if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_mode(params_name, mode):
    """Check a normalisation/dropout mode is 'train' or 'test'."""
    if mode not in ("train", "test"):
        raise ValueError(f"{params_name}['mode'] must be 'train' or 'test', got {mode!r}")
    return mode


def require_channel_vector(name, v, channels, like):
    """Check a per-channel parameter (gamma, beta) of input ``like`` holds exactly ``channels`` values.

    Accepted shapes are (C,) and the broadcastable (1, C, 1, 1) used by the
    CS231n group-norm notebook; the values are returned as a flat (C,) view
    (integer values cast to like's dtype, see :func:`as_float_like`).
    """
    v = as_float_like(name, v, like)
    if v.size != channels or (v.ndim != 1 and v.shape != (1, channels, 1, 1)):
        raise ValueError(f"{name} must have shape ({channels},) or (1, {channels}, 1, 1), got {v.shape}")
    return v.reshape(channels)


def window_output_size(axis, size, window, stride, pad=0, input_name="x", window_name="window", floor=False):
    """Number of window positions along one axis; the window must tile the padded input exactly.

    ``(size + 2*pad - window)`` must be a non-negative multiple of ``stride``;
    anything else would silently drop rows or columns, so it is an error, unless ``floor``
    asks for exactly that: the windows that do not fit are dropped (31 -> 15 with 2 / 2).
    """
    padded = size + 2 * pad
    if window > padded:
        raise ValueError(
            f"{window_name} {axis} {window} is larger than the padded input {axis} {padded} "
            f"({input_name} {axis} {size} + 2*pad {pad})"
        )
    if not floor and (padded - window) % stride != 0:
        raise ValueError(
            f"{window_name} {axis} {window} with stride {stride} does not tile the padded input {axis} "
            f"{padded} ({input_name} {axis} {size}, pad {pad}): (padded - window) % stride must be 0, "
            f"got {(padded - window) % stride}"
        )
    return (padded - window) // stride + 1
