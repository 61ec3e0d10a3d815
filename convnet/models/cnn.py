"""ThreeLayerConvNet with the CS231n signature."""

import numpy as np

from convnet.layer_utils import (
    affine_relu_backward,
    affine_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from convnet.layers import affine_backward, affine_forward
from convnet.models.base import Model, checks_arguments
from convnet.models.blocks import INPUT_DIM, conv_param, pool_param
from convnet.options import ConfigError, Option, subkey


def geometry_problem(input_dim, filter_size):
    """What ThreeLayerConvNet refuses about its sizes: (argument, reason), or None when they fit.

    The one place for these rules: :meth:`ThreeLayerConvNet.check_options` raises them as
    ConfigError, for a config before any data is read and for the constructor's arguments.
    """
    if filter_size % 2 != 1:
        return "filter_size", f"must be odd so the convolution keeps H x W, got {filter_size}"
    _, H, W = input_dim
    if H % 2 or W % 2:
        return "input_dim", f"must have an even H and W for the 2x2 pool, got {list(input_dim)}"
    return None


class ThreeLayerConvNet(Model):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax.

    Input (N, C, H, W) with H and W even. The convolution keeps H x W (stride 1,
    pad (filter_size - 1) // 2, so filter_size must be odd). Parameters: W1 (F, C, k, k),
    b1 (F,), W2 (F * H/2 * W/2, hidden_dim), b2, W3 (hidden_dim, num_classes), b3;
    weights from N(0, weight_scale^2), biases zero.
    """

    #: The config options (model.<key>) of this class: convnet.config reads them.
    OPTIONS = {
        "input_dim": INPUT_DIM,
        "num_filters": Option(32, int, range="[1, inf)"),
        "filter_size": Option(7, int, range="[1, inf)", help="odd, so that the convolution keeps H x W"),
        "hidden_dim": Option(100, int, range="[1, inf)"),
        "num_classes": Option(10, int, range="[1, inf)"),
        "weight_scale": Option(1e-3, float, range="(0, inf)", help="standard deviation of the initial weights"),
        "reg": Option(0.0, float, range="[0, inf)", help="L2 strength on the weights"),
    }

    @staticmethod
    def check_options(options, where="model", label="config key"):
        """ConfigError for sizes that do not fit (an even filter_size, an odd H or W); see convnet.options."""
        problem = geometry_problem(options["input_dim"], options["filter_size"])
        if problem is not None:
            argument, reason = problem
            raise ConfigError(f"{label} '{subkey(where, argument)}' {reason}")

    @staticmethod
    def weight_count(options):
        """How many numbers W1, W2 and W3 hold, for the options of a config (checked before building)."""
        (C, H, W), F, k = options["input_dim"], options["num_filters"], options["filter_size"]
        hidden = options["hidden_dim"]
        return F * C * k * k + F * (H // 2) * (W // 2) * hidden + hidden * options["num_classes"]

    @staticmethod
    def activation_count(options):
        """At least how many numbers the forward pass produces per image (convolution, pool, hidden, scores)."""
        (_, H, W), F = options["input_dim"], options["num_filters"]
        return F * H * W + F * (H // 2) * (W // 2) + options["hidden_dim"] + options["num_classes"]

    @checks_arguments
    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        C, H, W = input_dim
        self.conv_param = conv_param(filter_size, stride=1, pad=None)  # "same": keeps H x W
        self.pool_param = pool_param(2, stride=None)

        def normal(*shape):
            return (weight_scale * self.rng.standard_normal(shape)).astype(self.dtype)

        self.params = {
            "W1": normal(num_filters, C, filter_size, filter_size),
            "b1": np.zeros(num_filters, dtype=self.dtype),
            "W2": normal(num_filters * (H // 2) * (W // 2), hidden_dim),
            "b2": np.zeros(hidden_dim, dtype=self.dtype),
            "W3": normal(hidden_dim, num_classes),
            "b3": np.zeros(num_classes, dtype=self.dtype),
        }

    def loss(self, X, y=None):
        X = np.asarray(X, dtype=self.dtype)
        p = self.params
        pooled, cache1 = conv_relu_pool_forward(X, p["W1"], p["b1"], self.conv_param, self.pool_param)
        hidden, cache2 = affine_relu_forward(pooled, p["W2"], p["b2"])
        scores, cache3 = affine_forward(hidden, p["W3"], p["b3"])
        if y is None:
            return scores
        loss, dscores = self.data_loss(scores, y)
        grads = {}
        dhidden, grads["W3"], grads["b3"] = affine_backward(dscores, cache3)
        dpooled, grads["W2"], grads["b2"] = affine_relu_backward(dhidden, cache2)
        _, grads["W1"], grads["b1"] = conv_relu_pool_backward(dpooled, cache1)
        return loss, self.add_regularization_gradients(grads)
