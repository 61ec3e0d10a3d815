"""The gradient checkers themselves: each must pass a right gradient and fail a wrong one."""

import numpy as np
import pytest
from gradients import assert_layer_gradients

from convnet import layers
from convnet.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, grad_check_sparse


def cubic(x):
    """f(x) = sum(x^3) / 3, whose gradient is x^2."""
    return np.sum(x**3) / 3


def test_grad_check_sparse_passes_a_right_gradient(rng):
    x = rng.standard_normal((4, 5))
    assert grad_check_sparse(cubic, x, x**2, num_checks=10, seed=0, verbose=False) < 1e-8


def test_grad_check_sparse_detects_a_wrong_gradient(rng):
    x = rng.standard_normal((4, 5))
    assert grad_check_sparse(cubic, x, 1.1 * x**2, num_checks=10, seed=0, verbose=False) > 0.04
    assert grad_check_sparse(cubic, x, -(x**2), num_checks=10, seed=0, verbose=False) > 0.99


def test_grad_check_sparse_detects_one_wrong_entry_it_visits(rng):
    x = rng.standard_normal((3, 3))
    wrong = x**2
    wrong[1, 2] += 1.0
    # one coordinate per check: with 50 checks of 9 entries, [1, 2] is visited for this seed
    assert grad_check_sparse(cubic, x, wrong, num_checks=50, seed=1, verbose=False) > 0.1


def test_grad_check_sparse_leaves_x_unchanged_and_prints_each_check(rng, capsys):
    x = rng.standard_normal((2, 3))
    before = x.copy()
    grad_check_sparse(cubic, x, x**2, num_checks=4, seed=0, verbose=True)
    np.testing.assert_array_equal(x, before)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all("relative error" in line for line in lines)


def test_eval_numerical_gradient_of_a_known_function(rng):
    x = rng.standard_normal((3, 2))
    np.testing.assert_allclose(eval_numerical_gradient(cubic, x, verbose=False), x**2, rtol=1e-8, atol=1e-10)


def test_eval_numerical_gradient_array_of_a_known_function(rng):
    x, df = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    # d/dx sum(sin(x) * df) = cos(x) * df
    np.testing.assert_allclose(eval_numerical_gradient_array(np.sin, x, df), np.cos(x) * df, rtol=1e-7, atol=1e-10)


def affine_args(rng):
    return [rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)]


def test_assert_layer_gradients_passes_a_right_backward(rng):
    errors = assert_layer_gradients(layers.affine_forward, layers.affine_backward, affine_args(rng), [0, 1, 2], rng)
    assert len(errors) == 3


def test_assert_layer_gradients_fails_a_wrong_gradient(rng):
    def backward(dout, cache):
        dx, dw, db = layers.affine_backward(dout, cache)
        return dx, dw, 2 * db  # only the last gradient is wrong

    with pytest.raises(AssertionError, match="relative errors"):
        assert_layer_gradients(layers.affine_forward, backward, affine_args(rng), [0, 1, 2], rng)


def test_assert_layer_gradients_fails_a_backward_that_returns_fewer_gradients(rng):
    def backward(dout, cache):
        return layers.affine_backward(dout, cache)[:2]  # db missing: zip() alone would never look

    with pytest.raises(AssertionError, match="backward returned 2 gradients, expected 3"):
        assert_layer_gradients(layers.affine_forward, backward, affine_args(rng), [0, 1, 2], rng)


def test_assert_layer_gradients_fails_a_gradient_of_the_wrong_shape(rng):
    def backward(dout, cache):
        dx, dw, db = layers.affine_backward(dout, cache)
        return dx, dw, db.reshape(1, -1)

    with pytest.raises(AssertionError, match="gradient 2 has the wrong shape"):
        assert_layer_gradients(layers.affine_forward, backward, affine_args(rng), [0, 1, 2], rng)
