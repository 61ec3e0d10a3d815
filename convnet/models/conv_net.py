"""ConvNet: a deep network described by a list of blocks (from Python or a YAML config).

    ConvNet([
        {"type": "conv_bn_relu", "filters": 32},
        {"type": "pool"},
        {"type": "residual", "filters": 64},
        "global_avgpool",
        {"type": "dropout", "keep": 0.8},
    ], num_classes=10)

A final affine layer to ``num_classes`` scores is always appended (the head: its bias,
fixed output scale and initialisation are options). Block types, their options and
defaults are declared in :data:`convnet.models.blocks.BLOCKS`. A network with data-dependent
filters (a ``whiten`` block) gets them from :meth:`ConvNet.initialize_from_data`.
"""

import numpy as np

from convnet.models import blocks
from convnet.models.base import Model, checks_arguments
from convnet.options import Option, subkey

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


class ConvNet(Model):
    """A network assembled from blocks; see the module docstring and blocks.BLOCKS.

    layers: the block list (default DEFAULT_LAYERS, a small VGG-style net with batch norm).
    input_dim: (C, H, W). Weights use He initialisation; reg is the L2 strength on all
    weights (0.5 * reg * sum W^2). Parameters are named after their block, e.g. 'conv1.W',
    'bn1.gamma', 'res2.conv1.W', 'fc_out.W'. Convolutions followed by batch norm (conv_bn_relu,
    residual) have no bias: the normalisation would cancel it.
    """

    #: The config options (model.<key>) of this class: convnet.config reads them.
    OPTIONS = {
        "layers": Option(None, (list, type(None)), help="the block list (null: DEFAULT_LAYERS); see ConvNet blocks"),
        "input_dim": blocks.INPUT_DIM,
        "num_classes": Option(10, int, range="[1, inf)"),
        "reg": Option(0.0, float, range="[0, inf)", help="L2 strength on the weights"),
        "head_bias": Option(True, bool, help="whether the final affine layer has a bias"),
        "head_scale": Option(1.0, float, range="(0, inf)", help="fixed multiplier of the scores"),
        "head_init": Option("small", str, choices=("small", "uniform"),
                            help="final layer: small N(0, 0.01^2), uniform U(+-1/sqrt(fan_in)) (PyTorch's default)"),
        "label_smoothing": Option(0.0, float, range="[0, 1)",
                                  help="softmax loss against (1 - s) * onehot + s / num_classes"),
    }

    @staticmethod
    def check_options(options, where="model", label="config key"):
        """ConfigError if the block list does not fit input_dim (every block's shape is inferred)."""
        layers = DEFAULT_LAYERS if options["layers"] is None else options["layers"]
        blocks.resolve_layers(layers, options["input_dim"], subkey(where, "layers"), label)

    @staticmethod
    def weight_count(options):
        """How many numbers the weights of the convolutions and affine layers hold, for the options of a
        config: validation refuses a network too large for the machine before building it."""
        layers = DEFAULT_LAYERS if options["layers"] is None else options["layers"]
        spec, shapes = blocks.resolve_layers(layers, options["input_dim"])
        count, shape = 0, tuple(options["input_dim"])
        for (kind, block_options), out_shape in zip(spec, shapes):
            if kind == "whiten":
                channels = blocks.whiten_channels(shape, block_options["size"])
                count += channels * channels // 2
            elif "filters" in block_options:  # conv-like: filters x C x size x size (residual: two convolutions)
                # a block type without a size option counts as 1x1: the count stays a lower bound
                size = blocks.RESIDUAL_CONV["size"] if kind == "residual" else block_options.get("size", 1)
                count += block_options["filters"] * shape[0] * size * size
                if kind == "residual":  # the second convolution, and a 1x1 projection if C changes
                    count += block_options["filters"] ** 2 * size * size
                    count += shape[0] * block_options["filters"] if shape[0] != block_options["filters"] else 0
            elif "units" in block_options:
                count += int(np.prod(shape)) * block_options["units"]
            shape = out_shape
        return count + int(np.prod(shape)) * options["num_classes"]

    @staticmethod
    def activation_count(options):
        """At least how many numbers the forward pass produces per image (each block's output)."""
        _, shapes = blocks.resolve_layers(DEFAULT_LAYERS if options["layers"] is None else options["layers"],
                                          options["input_dim"])
        return sum(int(np.prod(shape)) for shape in shapes) + options["num_classes"]

    @checks_arguments
    def __init__(self, layers=None, input_dim=(3, 32, 32), num_classes=10, reg=0.0, head_bias=True, head_scale=1.0,
                 head_init="small", label_smoothing=0.0, dtype=np.float32, seed=None):
        super().__init__(reg, dtype, seed)
        self.input_dim = tuple(input_dim)
        self.label_smoothing = label_smoothing
        self.spec, shapes = blocks.resolve_layers(DEFAULT_LAYERS if layers is None else layers, self.input_dim)
        counters = {}

        def name(prefix):
            counters[prefix] = counters.get(prefix, 0) + 1
            return f"{prefix}{counters[prefix]}"

        shape = self.input_dim
        stages = []
        for (kind, options), expected in zip(self.spec, shapes):
            stages += blocks.BLOCKS[kind].build(self, name, shape, **options)
            shape = stages[-1].out_shape
            assert shape == expected, f"{kind}: built {shape}, declared shape {expected}"
        # A small final layer makes the initial scores near zero and the initial loss
        # near log(num_classes), whatever the depth.
        stages.append(blocks.Affine(self, "fc_out", shape, num_classes, init=head_init, bias=head_bias,
                                    scale=head_scale))
        self.network = blocks.Sequence(self.input_dim, stages)
        # what is frozen at epoch 0; the Solver updates it at each epoch's start
        self.frozen = {name for name, epoch in self.freeze_after.items() if epoch <= 0}

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
        # The input images need no gradient, so the first layer with something to train skips dx,
        # and frozen parameters get none (they are left out of grads).
        self.network.backward(self.params, dscores, caches, grads, need_dx=False)
        return loss, self.add_regularization_gradients(grads)

    def initialize_from_data(self, X):
        """Compute the data-dependent parameters (the filters of ``whiten`` blocks) from training images
        X (N, C, H, W), once, before the first step of a fresh run. Each such block sees the first
        ``images`` images as they reach it (the blocks before it run in test mode)."""
        X = np.asarray(X, dtype=self.dtype)
        if X.ndim != 4 or X.shape[1:] != self.input_dim:
            raise ValueError(f"X must have shape (N, {', '.join(map(str, self.input_dim))}), got {X.shape}")
        stages = self.network.blocks
        last = max((i for i, stage in enumerate(stages) if hasattr(stage, "initialize")), default=None)
        if last is None:
            return
        self.set_mode("test")
        x = X[: max(stage.images for stage in stages[: last + 1] if hasattr(stage, "initialize"))]
        for stage in stages[: last + 1]:
            if hasattr(stage, "initialize"):
                stage.initialize(self.params, x)
            if stage is not stages[last]:
                x, _ = stage.forward(self.params, x)

    def describe(self):
        """One line per block with its output shape, then the parameter count."""
        lines = [f"input {self.input_dim}"]
        lines += [f"{type(stage).__name__:<14} -> {stage.out_shape}" for stage in self.network.blocks]
        lines.append(f"parameters: {self.num_parameters():,}")
        return "\n".join(lines)
