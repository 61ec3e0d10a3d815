"""CS231n's ``cs231n.fast_layers``: the fast convolution and pooling (convnet's Cython kernels)."""

from convnet.conv_layers import conv_backward_fast, conv_forward_fast, max_pool_backward_fast, max_pool_forward_fast

__all__ = ["conv_backward_fast", "conv_forward_fast", "max_pool_backward_fast", "max_pool_forward_fast"]
