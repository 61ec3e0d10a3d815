"""CS231n's ``cs231n.layer_utils``: the sandwich layers; like CS231n's, a star import also
brings every layer of :mod:`convnet.cs231n.layers` and :mod:`convnet.cs231n.fast_layers`."""

from convnet.cs231n import fast_layers, layers
from convnet.cs231n.fast_layers import *  # noqa: F403
from convnet.cs231n.layers import *  # noqa: F403
from convnet.layer_utils import (
    affine_bn_relu_backward,
    affine_bn_relu_forward,
    affine_ln_relu_backward,
    affine_ln_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_bn_relu_pool_backward,
    conv_bn_relu_pool_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)

_SANDWICHES = [
    "affine_bn_relu_backward", "affine_bn_relu_forward", "affine_ln_relu_backward", "affine_ln_relu_forward",
    "affine_relu_backward", "affine_relu_forward", "conv_bn_relu_backward", "conv_bn_relu_forward",
    "conv_bn_relu_pool_backward", "conv_bn_relu_pool_forward", "conv_relu_backward", "conv_relu_forward",
    "conv_relu_pool_backward", "conv_relu_pool_forward",
]
__all__ = layers.__all__ + fast_layers.__all__ + _SANDWICHES
