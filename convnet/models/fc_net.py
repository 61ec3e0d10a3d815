"""Fully connected networks with the CS231n signatures."""

import numpy as np

from convnet.layer_utils import (
    affine_bn_relu_backward,
    affine_bn_relu_forward,
    affine_ln_relu_backward,
    affine_ln_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from convnet.layers import affine_backward, affine_forward, dropout_backward, dropout_forward
from convnet.models.base import Model, checks_arguments, keyword_aliases
from convnet.options import REQUIRED, Option

#: What may follow each hidden affine layer (gamma_i, beta_i with either norm).
HIDDEN_NORMALIZATIONS = (None, "batchnorm", "layernorm")


def _keep_ratio_from_dropout(keep):
    """CS231n 2019-2020's ``dropout=`` is the keep probability (1: no dropout).

    0 is read as no dropout: a keep probability of 0 would keep nothing, and 0 is how the
    2016-2018 notebooks, whose ``dropout=`` was the drop probability, ask for none.
    """
    return 1.0 if keep == 0 else keep


class TwoLayerNet(Model):
    """affine - relu - affine - softmax, on inputs of D = input_dim features.

    Parameters: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); weights drawn from
    N(0, weight_scale^2), biases zero. reg is the L2 strength (loss gets 0.5 * reg * sum W^2).
    dtype defaults to float64, as CS231n's TwoLayerNet computes (its notebook checks scores
    to 1e-6 and losses to 1e-10); a model built from a config uses the config's model.dtype
    (float32 unless set).
    """

    #: The config options (model.<key>) of this class: convnet.config reads them.
    OPTIONS = {
        "input_dim": Option(3 * 32 * 32, int, range="[1, inf)", help="features per input (C * H * W)"),
        "hidden_dim": Option(100, int, range="[1, inf)"),
        "num_classes": Option(10, int, range="[1, inf)"),
        "weight_scale": Option(1e-3, float, range="(0, inf)", help="standard deviation of the initial weights"),
        "reg": Option(0.0, float, range="[0, inf)", help="L2 strength on the weights"),
    }

    @staticmethod
    def weight_count(options):
        """How many numbers W1 and W2 hold, for the options of a config (checked before building)."""
        return options["input_dim"] * options["hidden_dim"] + options["hidden_dim"] * options["num_classes"]

    @staticmethod
    def activation_count(options):
        """How many numbers the forward pass produces per image (hidden layer and scores)."""
        return options["hidden_dim"] + options["num_classes"]

    @checks_arguments
    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0,
                 dtype=np.float64, seed=None):
        super().__init__(reg, dtype, seed)
        self.params = {
            "W1": (weight_scale * self.rng.standard_normal((input_dim, hidden_dim))).astype(self.dtype),
            "b1": np.zeros(hidden_dim, dtype=self.dtype),
            "W2": (weight_scale * self.rng.standard_normal((hidden_dim, num_classes))).astype(self.dtype),
            "b2": np.zeros(num_classes, dtype=self.dtype),
        }

    def loss(self, X, y=None):
        X = np.asarray(X, dtype=self.dtype)
        hidden, hidden_cache = affine_relu_forward(X, self.params["W1"], self.params["b1"])
        scores, scores_cache = affine_forward(hidden, self.params["W2"], self.params["b2"])
        if y is None:
            return scores
        loss, dscores = self.data_loss(scores, y)
        grads = {}
        dhidden, grads["W2"], grads["b2"] = affine_backward(dscores, scores_cache)
        _, grads["W1"], grads["b1"] = affine_relu_backward(dhidden, hidden_cache)
        return loss, self.add_regularization_gradients(grads)


class FullyConnectedNet(Model):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    hidden_dims: sizes of the L - 1 hidden layers. normalization: None, 'batchnorm' or
    'layernorm' (then gamma_i, beta_i per hidden layer). dropout_keep_ratio: keep probability
    p of inverted dropout after each relu (1 = no dropout). seed: makes initialisation
    reproducible and, as in CS231n, fixes the dropout mask: every forward draws the same
    mask (what a gradient check needs; :meth:`draw_new_dropout_masks` undoes it). Without a
    seed, the weights and masks follow np.random's global state. Parameters W1..WL, b1..bL
    (+ gamma1.., beta1..).

    Older CS231n keywords are accepted: ``dropout=p`` (2019-2020, the keep probability) for
    ``dropout_keep_ratio=p`` (``dropout=0``, the 2016-2018 "no dropout", for 1) and
    ``use_batchnorm=True`` (2016-2018) for ``normalization='batchnorm'``.
    """

    #: The config options (model.<key>) of this class: convnet.config reads them.
    OPTIONS = {
        "hidden_dims": Option(REQUIRED, list, each=Option(REQUIRED, int, range="[1, inf)"),
                              help="sizes of the hidden layers"),
        "input_dim": Option(3 * 32 * 32, int, range="[1, inf)", help="features per input (C * H * W)"),
        "num_classes": Option(10, int, range="[1, inf)"),
        "dropout_keep_ratio": Option(1.0, float, range="(0, 1]", help="keep probability of dropout (1: none)"),
        "normalization": Option(None, (str, type(None)), choices=HIDDEN_NORMALIZATIONS),
        "reg": Option(0.0, float, range="[0, inf)", help="L2 strength on the weights"),
        "weight_scale": Option(1e-2, float, range="(0, inf)", help="standard deviation of the initial weights"),
    }

    @staticmethod
    def weight_count(options):
        """How many numbers W1..WL hold, for the options of a config (checked before building)."""
        dims = [options["input_dim"], *options["hidden_dims"], options["num_classes"]]
        return sum(fan_in * fan_out for fan_in, fan_out in zip(dims[:-1], dims[1:]))

    @staticmethod
    def activation_count(options):
        """At least how many numbers the forward pass produces per image (each layer's output)."""
        return sum(options["hidden_dims"]) + options["num_classes"]

    @keyword_aliases(dropout=("dropout_keep_ratio", _keep_ratio_from_dropout),
                     use_batchnorm=("normalization", lambda use: "batchnorm" if use else None))
    @checks_arguments
    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout_keep_ratio=1.0,
                 normalization=None, reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.num_layers = 1 + len(hidden_dims)
        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(1, self.num_layers + 1):
            fan_in, fan_out = dims[i - 1], dims[i]
            self.params[f"W{i}"] = (weight_scale * self.rng.standard_normal((fan_in, fan_out))).astype(self.dtype)
            self.params[f"b{i}"] = np.zeros(fan_out, dtype=self.dtype)
            if normalization and i < self.num_layers:
                self.params[f"gamma{i}"] = np.ones(fan_out, dtype=self.dtype)
                self.params[f"beta{i}"] = np.zeros(fan_out, dtype=self.dtype)
        self.dropout_param = {"mode": "train", "p": dropout_keep_ratio, "rng": self.rng}
        if seed is not None:
            self.dropout_param["seed"] = seed
        if self.use_dropout:
            self.dropout_params = [self.dropout_param]
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        self.ln_params = [{} for _ in range(self.num_layers - 1)] if normalization == "layernorm" else []

    def _hidden_forward(self, x, i):
        W, b = self.params[f"W{i}"], self.params[f"b{i}"]
        if self.normalization == "batchnorm":
            gamma, beta = self.params[f"gamma{i}"], self.params[f"beta{i}"]
            return affine_bn_relu_forward(x, W, b, gamma, beta, self.bn_params[i - 1])
        if self.normalization == "layernorm":
            gamma, beta = self.params[f"gamma{i}"], self.params[f"beta{i}"]
            return affine_ln_relu_forward(x, W, b, gamma, beta, self.ln_params[i - 1])
        return affine_relu_forward(x, W, b)

    def _hidden_backward(self, dout, cache, i, grads):
        if self.normalization == "batchnorm":
            dx, grads[f"W{i}"], grads[f"b{i}"], grads[f"gamma{i}"], grads[f"beta{i}"] = affine_bn_relu_backward(dout, cache)
        elif self.normalization == "layernorm":
            dx, grads[f"W{i}"], grads[f"b{i}"], grads[f"gamma{i}"], grads[f"beta{i}"] = affine_ln_relu_backward(dout, cache)
        else:
            dx, grads[f"W{i}"], grads[f"b{i}"] = affine_relu_backward(dout, cache)
        return dx

    def loss(self, X, y=None):
        X = np.asarray(X, dtype=self.dtype)
        self.set_mode("test" if y is None else "train")
        caches = []
        out = X
        for i in range(1, self.num_layers):
            out, cache = self._hidden_forward(out, i)
            drop_cache = None
            if self.use_dropout:
                out, drop_cache = dropout_forward(out, self.dropout_param)
            caches.append((cache, drop_cache))
        L = self.num_layers
        scores, scores_cache = affine_forward(out, self.params[f"W{L}"], self.params[f"b{L}"])
        if y is None:
            return scores
        loss, dscores = self.data_loss(scores, y)
        grads = {}
        dout, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, scores_cache)
        for i in range(L - 1, 0, -1):
            cache, drop_cache = caches[i - 1]
            if drop_cache is not None:
                dout = dropout_backward(dout, drop_cache)
            dout = self._hidden_backward(dout, cache, i, grads)
        return loss, self.add_regularization_gradients(grads)
