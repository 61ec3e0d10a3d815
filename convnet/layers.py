"""numpy reference layers: each a forward/backward pair that reads like the maths.

Contract (CS231n): ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> gradients``. Outputs keep the input dtype. ``x`` must be
float32 or float64; integer parameters (``w``, ``b``, ``gamma``, ``beta``) are cast to x's
dtype, as CS231n's numpy layers allow.
The convolutional layers live in :mod:`convnet.conv_layers`.
"""

import math

import numpy as np

from convnet._kernels import activations as _activation_kernels
from convnet.checks import (
    as_float_array,
    as_float_like,
    require_mode,
    require_ndim,
    require_param,
    require_shape,
)
from convnet.threads import get_num_threads

# ---------------------------------------------------------------------------
# affine and relu
# ---------------------------------------------------------------------------


def affine_forward(x, w, b):
    """Fully connected layer: out = x.reshape(N, D) @ w + b.

    x: (N, d_1, ..., d_k) with D = d_1 * ... * d_k; w: (D, M); b: (M,).
    Returns out (N, M) and cache (x, w, b).
    """
    x = as_float_array("x", x)
    w = as_float_like("w", w, x)
    b = as_float_like("b", b, x)
    require_ndim("w", w, 2, "(D, M)")
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")
    D = int(np.prod(x.shape[1:]))
    if w.shape[0] != D:
        raise ValueError(f"w must have shape ({D}, M) to match x of shape {x.shape}, got {w.shape}")
    require_shape("b", b, (w.shape[1],))
    out = x.reshape(x.shape[0], D) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    """Backward pass of :func:`affine_forward`.

    dout: (N, M). Returns dx (shape of x), dw (D, M), db (M,).
    """
    x, w, b = cache
    require_shape("dout", dout, (x.shape[0], w.shape[1]))
    x2d = x.reshape(x.shape[0], -1)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x2d.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    """Rectified linear unit: out = max(0, x), any shape. Cache is x."""
    x = as_float_array("x", x)
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Backward pass of :func:`relu_forward`: dx = dout * 1[x > 0]."""
    x = cache
    require_shape("dout", dout, x.shape)
    # A multiply by the boolean mask runs ~5x faster than np.where on large arrays.
    return np.multiply(dout, x > 0, dtype=dout.dtype)


def _normal_cdf(x):
    """Phi(x) = erfc(-x / sqrt(2)) / 2 elementwise, in float64 (numpy has no erf ufunc; math.erfc is
    exact to rounding). Written with erfc, not (1 + erf(x / sqrt(2))) / 2, which cancels to
    nothing in the lower tail (x < -6)."""
    return 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-np.asarray(x, dtype=np.float64) / np.sqrt(2.0))


def gelu_forward(x):
    """Gaussian error linear unit, the exact form: out = x * Phi(x) with Phi the standard normal
    CDF, Phi(x) = (1 + erf(x / sqrt(2))) / 2. Any shape; cache is x. The reference: slow, float64
    inside; :func:`gelu_forward_fast` is the kernel the models use."""
    x = as_float_array("x", x)
    return (x * _normal_cdf(x)).astype(x.dtype, copy=False), x


def gelu_backward(dout, cache):
    """Backward pass of :func:`gelu_forward`: dx = dout * (Phi(x) + x * phi(x)),
    phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the standard normal density."""
    x = cache
    require_shape("dout", dout, x.shape)
    pdf = np.exp(-0.5 * x.astype(np.float64) ** 2) / np.sqrt(2.0 * np.pi)
    return (dout * (_normal_cdf(x) + x * pdf)).astype(dout.dtype, copy=False)


def gelu_forward_fast(x):
    """:func:`gelu_forward` in one threaded pass (Cython kernel); same contract, same dtype out."""
    x = np.ascontiguousarray(as_float_array("x", x))
    out = np.empty_like(x)
    _activation_kernels.gelu_forward(x.reshape(-1), out.reshape(-1), get_num_threads())
    return out, x


def gelu_backward_fast(dout, cache):
    """Backward pass of :func:`gelu_forward_fast` (one threaded pass): dx shaped like x."""
    x = cache
    dout = as_float_array("dout", dout)
    require_shape("dout", dout, x.shape)
    if dout.dtype != x.dtype:
        raise TypeError(f"dout has dtype {dout.dtype} but the forward input had dtype {x.dtype}")
    dout = np.ascontiguousarray(dout)
    dx = np.empty_like(x)
    _activation_kernels.gelu_backward(dout.reshape(-1), x.reshape(-1), dx.reshape(-1), get_num_threads())
    return dx


# ---------------------------------------------------------------------------
# normalisation: one pair of helpers serves batch, layer and group norm
# ---------------------------------------------------------------------------


def normalize(x, axes, eps):
    """Standardise x over ``axes``: xhat = (x - mean) / sqrt(var + eps).

    Returns xhat (shape of x), mean, var and inv_std, each with ``axes`` kept as size-1 axes.
    The variance is the biased (1/M) one, as batch norm defines it.
    """
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    return (x - mean) * inv_std, mean, var, inv_std


def normalize_backward(dxhat, xhat, inv_std, axes):
    """Closed-form gradient of :func:`normalize` with respect to x.

    With M values per group: dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
    the means taken over ``axes``.
    """
    mean_dxhat = dxhat.mean(axis=axes, keepdims=True)
    mean_dxhat_xhat = (dxhat * xhat).mean(axis=axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def running_stats(bn_param, features, dtype):
    """Fetch (creating on first use) the running mean/variance kept inside bn_param."""
    running_mean = bn_param.setdefault("running_mean", np.zeros(features, dtype=dtype))
    running_var = bn_param.setdefault("running_var", np.ones(features, dtype=dtype))
    require_shape("bn_param['running_mean']", running_mean, (features,))
    require_shape("bn_param['running_var']", running_var, (features,))
    return running_mean, running_var


def update_running_stats(bn_param, mean, var):
    """Exponential moving average kept in bn_param (momentum defaults to 0.9).

    running = momentum * running + (1 - momentum) * batch statistic, updated in place.
    """
    momentum = bn_param.get("momentum", 0.9)
    running_mean, running_var = running_stats(bn_param, mean.size, mean.dtype)
    running_mean *= momentum
    running_mean += (1 - momentum) * mean.reshape(-1)
    running_var *= momentum
    running_var += (1 - momentum) * var.reshape(-1)


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of (N, D) features.

    bn_param: {'mode': 'train'|'test', 'eps': 1e-5, 'momentum': 0.9}; the running
    mean and variance are kept in bn_param['running_mean'] / ['running_var'] (D,),
    created as zeros / ones on first use and updated in train mode only.
    Train mode normalises with the batch statistics, test mode with the running ones.
    gamma, beta: (D,). Returns out (N, D) and a cache.
    """
    x = as_float_array("x", x)
    require_ndim("x", x, 2, "(N, D)")
    D = x.shape[1]
    gamma, beta = as_float_like("gamma", gamma, x), as_float_like("beta", beta, x)
    require_shape("gamma", gamma, (D,))
    require_shape("beta", beta, (D,))
    mode = require_mode("bn_param", require_param(bn_param, "bn_param", "mode"))
    eps = bn_param.get("eps", 1e-5)
    if mode == "train":
        xhat, mean, var, inv_std = normalize(x, 0, eps)
        update_running_stats(bn_param, mean, var)
    else:
        running_mean, running_var = running_stats(bn_param, D, x.dtype)
        inv_std = 1.0 / np.sqrt(running_var + eps)
        xhat = (x - running_mean) * inv_std
    out = (gamma * xhat + beta).astype(x.dtype, copy=False)
    return out, (xhat, inv_std, gamma, mode)


def batchnorm_backward(dout, cache):
    """Backward pass of :func:`batchnorm_forward`: returns dx (N, D), dgamma (D,), dbeta (D,)."""
    xhat, inv_std, gamma, mode = cache
    require_shape("dout", dout, xhat.shape)
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    if mode == "train":
        dx = normalize_backward(dout * gamma, xhat, inv_std, 0)
    else:  # the running statistics are constants
        dx = dout * gamma * inv_std
    return dx.astype(dout.dtype, copy=False), dgamma, dbeta


# CS231n's notebooks call the closed-form version "alt"; ours is already closed form.
batchnorm_backward_alt = batchnorm_backward


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation: each row of x (N, D) standardised over its D features.

    ln_param: {'eps': 1e-5}. gamma, beta: (D,). Same in train and test mode.
    """
    x = as_float_array("x", x)
    require_ndim("x", x, 2, "(N, D)")
    D = x.shape[1]
    gamma, beta = as_float_like("gamma", gamma, x), as_float_like("beta", beta, x)
    require_shape("gamma", gamma, (D,))
    require_shape("beta", beta, (D,))
    eps = (ln_param or {}).get("eps", 1e-5)
    xhat, _, _, inv_std = normalize(x, 1, eps)
    out = (gamma * xhat + beta).astype(x.dtype, copy=False)
    return out, (xhat, inv_std, gamma)


def layernorm_backward(dout, cache):
    """Backward pass of :func:`layernorm_forward`: returns dx (N, D), dgamma (D,), dbeta (D,)."""
    xhat, inv_std, gamma = cache
    require_shape("dout", dout, xhat.shape)
    dgamma = (dout * xhat).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dx = normalize_backward(dout * gamma, xhat, inv_std, 1)
    return dx.astype(dout.dtype, copy=False), dgamma, dbeta


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------


def seed_from_global_state():
    """A seed drawn from numpy's global generator (np.random), for a generator nobody seeded.

    CS231n draws its random numbers from np.random, so ``np.random.seed(231)`` in a notebook
    makes what follows reproducible; convnet's unseeded models and dropout masks keep that
    promise by seeding their own generators from there.
    """
    return int(np.random.randint(np.iinfo(np.int64).max, dtype=np.int64))


def dropout_forward(x, dropout_param):
    """Inverted dropout.

    dropout_param: {'p': keep probability in (0, 1], 'mode': 'train'|'test', 'seed': optional int,
    'rng': optional numpy Generator}. In train mode each unit is kept with probability p and
    scaled by 1/p, so test mode is the identity. A 'seed' draws the same mask every call
    (what gradient checks need); otherwise 'rng' draws it, or without one a generator seeded
    from np.random's global state (see :func:`seed_from_global_state`).
    """
    x = as_float_array("x", x)
    p = require_param(dropout_param, "dropout_param", "p")
    if not 0 < p <= 1:
        raise ValueError(f"dropout_param['p'] is the keep probability and must lie in (0, 1], got {p}")
    mode = require_mode("dropout_param", require_param(dropout_param, "dropout_param", "mode"))
    if mode == "test" or p == 1:
        return x, (dropout_param, None)
    if dropout_param.get("seed") is not None:
        rng = np.random.default_rng(dropout_param["seed"])
    else:
        rng = dropout_param.get("rng") or np.random.default_rng(seed_from_global_state())
    mask = (rng.random(x.shape) < p).astype(x.dtype) / x.dtype.type(p)
    return x * mask, (dropout_param, mask)


def dropout_backward(dout, cache):
    """Backward pass of :func:`dropout_forward`: dx = dout * mask (identity in test mode)."""
    _, mask = cache
    if mask is None:
        return dout
    require_shape("dout", dout, mask.shape)
    return dout * mask


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------


def _check_scores_and_labels(x, y):
    x = as_float_array("x", x)
    require_ndim("x", x, 2, "(N, C) class scores")
    y = np.asarray(y)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x of shape {x.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise ValueError(f"y must hold labels in [0, {x.shape[1]}), got range [{y.min()}, {y.max()}]")
    return x, y


def softmax_loss(x, y, label_smoothing=0.0):
    """Mean cross-entropy of softmax(x) against labels, optionally smoothed.

    x: (N, C) scores; y: (N,) integer labels in [0, C); label_smoothing s in [0, 1): the target
    of each row is t = (1 - s) * onehot(y) + s / C instead of onehot(y).
    Returns the loss -mean_i sum_j t_ij log softmax(x)_ij (float) and dx (N, C) = (softmax(x) - t) / N.
    """
    x, y = _check_scores_and_labels(x, y)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.floating)):
        raise TypeError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
    N, C = x.shape
    shifted = x - x.max(axis=1, keepdims=True)  # exp never overflows
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(N)
    loss = -log_probs[rows, y].mean()
    dx = np.exp(log_probs)
    if label_smoothing:
        # -sum_j t_j log p_j = (1 - s) * (-log p_y) + s * mean_j(-log p_j)
        loss = (1 - label_smoothing) * loss - label_smoothing * log_probs.mean(axis=1).mean()
        dx -= x.dtype.type(label_smoothing / C)
        dx[rows, y] -= x.dtype.type(1 - label_smoothing)
    else:
        dx[rows, y] -= 1
    dx /= N
    return float(loss), dx


def svm_loss(x, y):
    """Multiclass hinge loss with margin 1: mean over i of sum_{j != y_i} max(0, x_ij - x_iy_i + 1).

    x: (N, C) scores; y: (N,) labels. Returns the loss (float) and dx (N, C).
    """
    x, y = _check_scores_and_labels(x, y)
    N = x.shape[0]
    rows = np.arange(N)
    margins = np.maximum(0, x - x[rows, y][:, None] + 1)
    margins[rows, y] = 0
    loss = margins.sum() / N
    dx = (margins > 0).astype(x.dtype)
    dx[rows, y] -= dx.sum(axis=1)
    dx /= N
    return float(loss), dx
