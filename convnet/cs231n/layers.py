"""CS231n's ``cs231n.layers``: the layer pairs of assignment 2, from :mod:`convnet.layers` and
:mod:`convnet.conv_layers` (the spatial norms are the fast ones; same contract)."""

from convnet.conv_layers import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from convnet.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
    softmax_loss,
    svm_loss,
)

__all__ = [
    "affine_backward", "affine_forward", "batchnorm_backward", "batchnorm_backward_alt", "batchnorm_forward",
    "conv_backward_naive", "conv_forward_naive", "dropout_backward", "dropout_forward", "layernorm_backward",
    "layernorm_forward", "max_pool_backward_naive", "max_pool_forward_naive", "relu_backward", "relu_forward",
    "softmax_loss", "spatial_batchnorm_backward", "spatial_batchnorm_forward", "spatial_groupnorm_backward",
    "spatial_groupnorm_forward", "svm_loss",
]
