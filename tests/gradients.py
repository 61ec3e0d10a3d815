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
    numerical = numerical_layer_gradients(forward, args, dout, wrt, h=h)
    errors = []
    for position, (num, ana) in enumerate(zip(numerical, analytic)):
        assert ana.shape == np.shape(args[wrt[position]]), f"gradient {position} has the wrong shape"
        errors.append(rel_error(num, ana))
    assert max(errors) < tol, f"relative errors {errors} exceed {tol}"
    return errors
