"""Helpers that compare a layer's backward pass with numerical gradients."""

import numpy as np

from convnet.gradient_check import eval_numerical_gradient_array, rel_error


def numerical_layer_gradients(forward, args, dout, wrt, h=1e-4):
    """Numerical gradient of sum(forward(*args)[0] * dout) with respect to each args[i], i in wrt."""
    args = list(args)
    grads = []
    for i in wrt:

        def f(value, i=i):
            trial = list(args)
            trial[i] = value
            return forward(*trial)[0]

        grads.append(eval_numerical_gradient_array(f, args[i], dout, h=h))
    return grads


def assert_layer_gradients(forward, backward, args, wrt, rng, tol=1e-7, h=1e-4):
    """Run forward/backward once and check each requested gradient against centred differences.

    wrt: indices into args, in the order backward returns their gradients (for a backward that
    returns a single array, wrt has one index). h is the finite-difference step.
    Returns the relative errors.
    """
    out, cache = forward(*args)
    dout = rng.standard_normal(out.shape)
    analytic = backward(dout, cache)
    if isinstance(analytic, np.ndarray):
        analytic = (analytic,)
    assert len(analytic) == len(wrt), f"backward returned {len(analytic)} gradients, expected {len(wrt)}"
    numerical = numerical_layer_gradients(forward, args, dout, wrt, h=h)
    errors = []
    for position, (num, ana) in enumerate(zip(numerical, analytic, strict=True)):
        assert ana.shape == np.shape(args[wrt[position]]), f"gradient {position} has the wrong shape"
        errors.append(rel_error(num, ana))
    assert max(errors) < tol, f"relative errors {errors} exceed {tol}"
    return errors


def richardson_gradient(f, x, h=1e-4, max_entries=None, rng=None):
    """Numerical gradient of scalar f at x, fourth-order accurate: (4 g(h) - g(2h)) / 3.

    Centred differences err by O(h^2); combining two step sizes cancels that term, so a
    larger h (less rounding error) can be used. Deep models with batch norm over a few
    samples have large third derivatives, where plain centred differences drift by ~1e-5.
    With max_entries, only that many randomly chosen entries are estimated (the others
    are returned as NaN); returns (gradient, checked flat indices).
    """
    flat = x.reshape(-1)  # a view: perturbing it perturbs x
    count = flat.size if max_entries is None else min(flat.size, max_entries)
    chosen = np.arange(flat.size) if count == flat.size else rng.choice(flat.size, count, replace=False)
    grad = np.full(flat.size, np.nan)
    for i in chosen:
        original = flat[i]
        values = {}
        for step in (-2 * h, -h, h, 2 * h):
            flat[i] = original + step
            values[step] = float(f(x))
        flat[i] = original
        g_h = (values[h] - values[-h]) / (2 * h)
        g_2h = (values[2 * h] - values[-2 * h]) / (4 * h)
        grad[i] = (4 * g_h - g_2h) / 3
    return grad.reshape(x.shape), chosen


def assert_gradient_matches(numerical, analytic, name, tol=1e-6):
    """rel_error(numerical, analytic) < tol, or both ~0 when the true gradient is zero
    (a bias feeding a batch norm: the normalisation cancels it exactly, and the relative
    error of two rounding residues is meaningless)."""
    if np.max(np.abs(analytic), initial=0) < 1e-10 and np.max(np.abs(numerical), initial=0) < 1e-8:
        return
    error = rel_error(numerical, analytic)
    assert error < tol, f"{name}: relative error {error:.2e} >= {tol}"
