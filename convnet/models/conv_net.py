"""ConvNet: a deep network described by a list of blocks (from Python or a YAML config).

    ConvNet([
        {"type": "conv_bn_relu", "filters": 32},
        {"type": "pool"},
        {"type": "residual", "filters": 64},
        "global_avgpool",
        {"type": "dropout", "keep": 0.8},
    ], num_classes=10)

A final affine layer to ``num_classes`` scores is always appended. Block types and
their options (defaults in brackets) are listed in ``BLOCK_OPTIONS``.
"""

import difflib

import numpy as np

from convnet.models import blocks
from convnet.models.base import Model

# type -> {option: default}; REQUIRED marks options without a default.
REQUIRED = object()
_CONV = {"filters": REQUIRED, "size": 3, "stride": 1, "pad": None}
BLOCK_OPTIONS = {
    "conv": _CONV,
    "conv_relu": _CONV,
    "conv_bn_relu": _CONV,
    "batchnorm": {"momentum": 0.9, "eps": 1e-5},
    "relu": {},
    "pool": {"size": 2, "stride": None},
    "global_avgpool": {},
    "dropout": {"keep": 0.5},
    "affine": {"units": REQUIRED},
    "affine_relu": {"units": REQUIRED},
    "residual": {"filters": REQUIRED},
}

DEFAULT_LAYERS = [
    {"type": "conv_bn_relu", "filters": 32},
    {"type": "conv_bn_relu", "filters": 32},
    {"type": "pool"},
    {"type": "conv_bn_relu", "filters": 64},
    {"type": "conv_bn_relu", "filters": 64},
    {"type": "pool"},
    {"type": "conv_bn_relu", "filters": 128},
    {"type": "pool"},
    "global_avgpool",
]


def _closest(word, choices):
    match = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def normalize_spec(layers, where="model.layers"):
    """Check a block list and return it as [(type, {option: value})], defaults filled in.

    Raises ValueError naming the entry, the bad key or value, and what is allowed.
    """
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"{where} must be a non-empty list of blocks, got {layers!r}")
    normalized = []
    for index, entry in enumerate(layers):
        here = f"{where}[{index}]"
        if isinstance(entry, str):
            entry = {"type": entry}
        if not isinstance(entry, dict) or "type" not in entry:
            raise ValueError(f"{here} must be a block type name or a mapping with a 'type' key, got {entry!r}")
        kind = entry["type"]
        if kind not in BLOCK_OPTIONS:
            raise ValueError(
                f"{here}: unknown block type {kind!r}{_closest(kind, BLOCK_OPTIONS)} "
                f"(allowed: {', '.join(BLOCK_OPTIONS)})"
            )
        allowed = BLOCK_OPTIONS[kind]
        options = {}
        for key, value in entry.items():
            if key == "type":
                continue
            if key not in allowed:
                raise ValueError(
                    f"{here}: {kind} has no option {key!r}{_closest(key, allowed)} "
                    f"(allowed: {', '.join(allowed) or 'none'})"
                )
            options[key] = value
        for key, default in allowed.items():
            if key not in options:
                if default is REQUIRED:
                    raise ValueError(f"{here}: {kind} needs {key!r}")
                options[key] = default
        for key in ("filters", "units", "size"):
            if key in options and (isinstance(options[key], bool) or not isinstance(options[key], int) or options[key] < 1):
                raise ValueError(f"{here}: {kind} {key} must be a positive integer, got {options[key]!r}")
        normalized.append((kind, options))
    return normalized


class ConvNet(Model):
    """A network assembled from blocks; see the module docstring and BLOCK_OPTIONS.

    layers: the block list (default DEFAULT_LAYERS, a small VGG-style net with batch norm).
    input_dim: (C, H, W). Weights use He initialisation; reg is the L2 strength on all
    weights (0.5 * reg * sum W^2). Parameters are named after their block, e.g. 'conv1.W',
    'bn1.gamma', 'res2.conv1.W', 'fc_out.W'. Convolutions followed by batch norm (conv_bn_relu,
    residual) have no bias: the normalisation would cancel it.
    """

    def __init__(self, layers=None, input_dim=(3, 32, 32), num_classes=10, reg=0.0, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        self.spec = normalize_spec(DEFAULT_LAYERS if layers is None else layers)
        self.input_dim = tuple(input_dim)
        counters = {}

        def name(prefix):
            counters[prefix] = counters.get(prefix, 0) + 1
            return f"{prefix}{counters[prefix]}"

        shape = self.input_dim
        stages = []
        for kind, o in self.spec:
            if len(shape) != 3 and kind not in ("affine", "affine_relu", "dropout", "relu", "batchnorm"):
                raise ValueError(f"block {kind!r} needs (C, H, W) input, but the previous blocks produce {shape}")
            if kind in ("conv", "conv_relu", "conv_bn_relu"):
                conv = blocks.Conv(self, name("conv"), shape, o["filters"], o["size"], o["stride"], o["pad"],
                                   bias=kind != "conv_bn_relu")
                stages.append(conv)
                if kind == "conv_bn_relu":  # batch norm and ReLU run fused in one kernel
                    stages.append(blocks.BatchNorm(self, name("bn"), conv.out_shape, relu=True))
                elif kind == "conv_relu":
                    stages.append(blocks.ReLU(conv.out_shape))
            elif kind == "batchnorm":
                stages.append(blocks.BatchNorm(self, name("bn"), shape, o["momentum"], o["eps"]))
            elif kind == "relu":
                stages.append(blocks.ReLU(shape))
            elif kind == "pool":
                stages.append(blocks.MaxPool(name("pool"), shape, o["size"], o["stride"]))
            elif kind == "global_avgpool":
                stages.append(blocks.GlobalAvgPool(shape))
            elif kind == "dropout":
                stages.append(blocks.Dropout(self, shape, o["keep"]))
            elif kind in ("affine", "affine_relu"):
                stages.append(blocks.Affine(self, name("fc"), shape, o["units"]))
                if kind == "affine_relu":
                    stages.append(blocks.ReLU(stages[-1].out_shape))
            else:  # residual
                stages.append(blocks.Residual(self, name("res"), shape, o["filters"]))
            shape = stages[-1].out_shape
        # A small final layer makes the initial scores near zero and the initial loss
        # near log(num_classes), whatever the depth.
        stages.append(blocks.Affine(self, "fc_out", shape, num_classes, weight_scale=0.01))
        self.network = blocks.Sequence(self.input_dim, stages)

    def loss(self, X, y=None):
        X = np.asarray(X, dtype=self.dtype)
        if X.shape[1:] != self.input_dim:
            raise ValueError(f"X must have shape (N, {', '.join(map(str, self.input_dim))}), got {X.shape}")
        self.set_mode("test" if y is None else "train")
        scores, caches = self.network.forward(self.params, X)
        if y is None:
            return scores
        loss, dscores = self.data_loss(scores, y)
        grads = {}
        # The input images need no gradient, so the first layer skips dx.
        self.network.backward(self.params, dscores, caches, grads, need_dx=False)
        return loss, self.add_regularization_gradients(grads)

    def describe(self):
        """One line per block with its output shape, then the parameter count."""
        lines = [f"input {self.input_dim}"]
        lines += [f"{type(stage).__name__:<14} -> {stage.out_shape}" for stage in self.network.blocks]
        lines.append(f"parameters: {self.num_parameters():,}")
        return "\n".join(lines)
