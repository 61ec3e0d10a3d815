"""Numerical gradients by centred differences, for checking backward passes.

Use float64 inputs: with float32 the finite differences are dominated by rounding.
"""

import numpy as np


def rel_error(x, y):
    """Largest elementwise relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _evaluate_around(f, x, index, h):
    """Return (f(x + h e_index), f(x - h e_index)); x is perturbed in place and restored."""
    original = x[index]
    x[index] = original + h
    f_plus = np.array(f(x), dtype=np.float64, copy=True)
    x[index] = original - h
    f_minus = np.array(f(x), dtype=np.float64, copy=True)
    x[index] = original
    return f_plus, f_minus


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Gradient of a scalar function f at x (any shape): (f(x + h e_i) - f(x - h e_i)) / 2h.

    x is perturbed in place and restored after each coordinate.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        f_plus, f_minus = _evaluate_around(f, x, index, h)
        grad[index] = (f_plus - f_minus) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of sum(f(x) * df) with respect to x, for an array-valued f.

    This is what a layer's backward pass computes when it receives upstream gradient df.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        f_plus, f_minus = _evaluate_around(f, x, index, h)
        grad[index] = np.sum((f_plus - f_minus) * df) / (2 * h)
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5, seed=None, verbose=True):
    """Compare analytic_grad with centred differences at num_checks random coordinates of x.

    Returns the largest relative error seen (and prints each comparison when verbose).
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(num_checks):
        index = tuple(int(rng.integers(size)) for size in x.shape)
        f_plus, f_minus = _evaluate_around(f, x, index, h)
        numerical = float(f_plus - f_minus) / (2 * h)
        analytic = float(analytic_grad[index])
        error = abs(numerical - analytic) / max(1e-8, abs(numerical) + abs(analytic))
        worst = max(worst, error)
        if verbose:
            print(f"numerical: {numerical:f} analytic: {analytic:f}, relative error: {error:e}")
    return worst
