"""Sandwich layers: common chains of layers as one forward/backward pair.

Each ``*_forward`` returns (out, cache) and each ``*_backward(dout, cache)`` returns the
gradients of its inputs in argument order. All run on the fast layers.
"""

from convnet.conv_layers import (
    conv_backward,
    conv_forward,
    max_pool_backward,
    max_pool_forward,
    spatial_batchnorm_relu_backward,
    spatial_batchnorm_relu_forward,
)
from convnet.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
)


__all__ = [
    "affine_relu_forward",
    "affine_relu_backward",
    "affine_bn_relu_forward",
    "affine_bn_relu_backward",
    "affine_ln_relu_forward",
    "affine_ln_relu_backward",
    "conv_relu_forward",
    "conv_relu_backward",
    "conv_bn_relu_forward",
    "conv_bn_relu_backward",
    "conv_relu_pool_forward",
    "conv_relu_pool_backward",
    "conv_bn_relu_pool_forward",
    "conv_bn_relu_pool_backward",
]


def affine_relu_forward(x, w, b):
    """affine -> relu. Returns out (N, M) and a cache."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Returns dx, dw, db."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache)


def _affine_norm_relu_forward(x, w, b, gamma, beta, norm_param, norm_forward):
    a, fc_cache = affine_forward(x, w, b)
    a_norm, norm_cache = norm_forward(a, gamma, beta, norm_param)
    out, relu_cache = relu_forward(a_norm)
    return out, (fc_cache, norm_cache, relu_cache)


def _affine_norm_relu_backward(dout, cache, norm_backward):
    fc_cache, norm_cache, relu_cache = cache
    da, dgamma, dbeta = norm_backward(relu_backward(dout, relu_cache), norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param):
    """affine -> batchnorm -> relu."""
    return _affine_norm_relu_forward(x, w, b, gamma, beta, bn_param, batchnorm_forward)


def affine_bn_relu_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    return _affine_norm_relu_backward(dout, cache, batchnorm_backward)


def affine_ln_relu_forward(x, w, b, gamma, beta, ln_param):
    """affine -> layernorm -> relu."""
    return _affine_norm_relu_forward(x, w, b, gamma, beta, ln_param, layernorm_forward)


def affine_ln_relu_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    return _affine_norm_relu_backward(dout, cache, layernorm_backward)


def conv_relu_forward(x, w, b, conv_param):
    """conv -> relu."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Returns dx, dw, db."""
    conv_cache, relu_cache = cache
    return conv_backward(relu_backward(dout, relu_cache), conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """conv -> spatial batchnorm -> relu (the last two fused in one kernel)."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    out, bn_relu_cache = spatial_batchnorm_relu_forward(a, gamma, beta, bn_param)
    return out, (conv_cache, bn_relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    conv_cache, bn_relu_cache = cache
    da, dgamma, dbeta = spatial_batchnorm_relu_backward(dout, bn_relu_cache)
    dx, dw, db = conv_backward(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """conv -> relu -> max pool."""
    a, conv_cache = conv_forward(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Returns dx, dw, db."""
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward(dout, pool_cache)
    return conv_backward(relu_backward(ds, relu_cache), conv_cache)


def conv_bn_relu_pool_forward(x, w, b, gamma, beta, conv_param, bn_param, pool_param):
    """conv -> spatial batchnorm -> relu -> max pool."""
    s, inner_cache = conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    out, pool_cache = max_pool_forward(s, pool_param)
    return out, (inner_cache, pool_cache)


def conv_bn_relu_pool_backward(dout, cache):
    """Returns dx, dw, db, dgamma, dbeta."""
    inner_cache, pool_cache = cache
    return conv_bn_relu_backward(max_pool_backward(dout, pool_cache), inner_cache)
