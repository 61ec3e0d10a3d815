"""CS231n's ``cs231n.gradient_check``: numerical gradients by centred differences."""

from convnet.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, grad_check_sparse

__all__ = ["eval_numerical_gradient", "eval_numerical_gradient_array", "grad_check_sparse"]
