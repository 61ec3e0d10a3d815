"""Building blocks of :class:`convnet.models.ConvNet` and the registry of block types.

A block knows its input and output shapes (per image, without N), creates its
parameters in the model's ``params`` dict under its own name prefix, and offers
``forward(params, x) -> (out, cache)`` and ``backward(params, dout, cache, grads) -> dx``,
writing its parameter gradients into ``grads``. Weights use He initialisation,
N(0, 2 / fan_in), which keeps activations at a steady scale through ReLU layers.

``BLOCKS`` maps each block type a ConvNet layer list may name (``conv_bn_relu``, ``pool``,
...) to its declared options (types, ranges, defaults), its output shape and its builder;
ConvNet, config validation, the docs table and the benchmark's PyTorch twin all read it.
A new block type is one ``BLOCKS`` entry plus its builder.
"""

from typing import Callable, NamedTuple

import numpy as np

from convnet import conv_layers, layers
from convnet.checks import window_output_size
from convnet.options import REQUIRED, ConfigError, Option, choose, resolve


# ---------------------------------------------------------------------------
# the options of each block type (types, ranges, defaults): declared once, here
# ---------------------------------------------------------------------------

POSITIVE = "[1, inf)"
FILTERS = Option(REQUIRED, int, range=POSITIVE, help="output channels")
CONV_OPTIONS = {
    "filters": FILTERS,
    "size": Option(3, int, range=POSITIVE, help="filter side"),
    "stride": Option(1, int, range=POSITIVE),
    "pad": Option(None, (int, type(None)), range="[0, inf)", help='zero padding (null: (size - 1) // 2, "same")'),
}
BATCHNORM_OPTIONS = {
    "momentum": Option(0.9, float, range="[0, 1]", help="weight of the old running statistics"),
    "eps": Option(1e-5, float, range="(0, inf)"),
}
POOL_OPTIONS = {
    "size": Option(2, int, range=POSITIVE, help="window side"),
    "stride": Option(None, (int, type(None)), range=POSITIVE, help="null: = size"),
}
DROPOUT_OPTIONS = {"keep": Option(0.5, float, range="(0, 1]", help="probability of keeping a unit")}
UNITS = {"units": Option(REQUIRED, int, range=POSITIVE, help="outputs")}
#: The two convolutions of a residual block (its only option is filters).
RESIDUAL_CONV = {"size": 3, "stride": 1, "pad": None}


def defaults(options):
    """{name: default} of declared options that have one: what a block built inside another gets."""
    return {key: declared.default for key, declared in options.items() if declared.default is not REQUIRED}


def conv_param(size, stride, pad):
    """{'stride', 'pad'} of a convolution; pad None is (size - 1) // 2, which keeps H x W at stride 1
    for an odd size ("same")."""
    return {"stride": stride, "pad": (size - 1) // 2 if pad is None else pad}


def pool_param(size, stride):
    """{'pool_height', 'pool_width', 'stride'} of size x size max pooling; stride None is size."""
    return {"pool_height": size, "pool_width": size, "stride": size if stride is None else stride}


def conv_shape(in_shape, filters, size, stride, pad, where="conv"):
    """(F, H', W') of a size x size convolution of (C, H, W); ValueError if it does not tile the input."""
    _, H, W = in_shape
    param = conv_param(size, stride, pad)
    return (filters,
            window_output_size("height", H, size, param["stride"], param["pad"], f"{where} input", "filter"),
            window_output_size("width", W, size, param["stride"], param["pad"], f"{where} input", "filter"))


def pool_shape(in_shape, size, stride, where="pool"):
    """(C, H', W') of size x size max pooling; ValueError if it does not tile the input."""
    C, H, W = in_shape
    param = pool_param(size, stride)
    return (C,
            window_output_size("height", H, size, param["stride"], 0, f"{where} input", "pool window"),
            window_output_size("width", W, size, param["stride"], 0, f"{where} input", "pool window"))


def he_normal(rng, shape, fan_in, dtype):
    return (np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)).astype(dtype)


class Block:
    """A stage with no parameters unless a subclass adds some."""

    def __init__(self, in_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape

    def forward(self, params, x):
        raise NotImplementedError

    def backward(self, params, dout, cache, grads, need_dx=True):
        raise NotImplementedError


class Conv(Block):
    """Convolution with F filters of size x size; pad None is (size - 1) // 2 ("same" at stride 1).

    bias=False leaves the bias out: before a batch norm it would be cancelled by the mean anyway.
    """

    def __init__(self, model, name, in_shape, filters, size, stride, pad, bias=True):
        super().__init__(in_shape)
        C = self.in_shape[0]
        self.conv_param = conv_param(size, stride, pad)
        self.out_shape = conv_shape(self.in_shape, filters, size, stride, pad, name)
        self.w = f"{name}.W"
        model.params[self.w] = he_normal(model.rng, (filters, C, size, size), C * size * size, model.dtype)
        if bias:
            self.b = f"{name}.b"
            model.params[self.b] = np.zeros(filters, dtype=model.dtype)
        else:
            self.b = None
            self.zero_bias = np.zeros(filters, dtype=model.dtype)

    def forward(self, params, x):
        b = params[self.b] if self.b else self.zero_bias
        return conv_layers.conv_forward(x, params[self.w], b, self.conv_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        dx, grads[self.w], db = conv_layers.conv_backward(dout, cache, compute_dx=need_dx)
        if self.b:
            grads[self.b] = db
        return dx


class BatchNorm(Block):
    """Spatial batch norm on (C, H, W) inputs, vanilla batch norm on (D,) inputs.

    relu=True applies a ReLU to the output; on images that runs fused in the same kernel.
    """

    def __init__(self, model, name, in_shape, momentum, eps, relu=False):
        super().__init__(in_shape)
        channels = self.in_shape[0]
        self.gamma, self.beta = f"{name}.gamma", f"{name}.beta"
        model.params[self.gamma] = np.ones(channels, dtype=model.dtype)
        model.params[self.beta] = np.zeros(channels, dtype=model.dtype)
        self.bn_param = {"mode": "train", "momentum": momentum, "eps": eps}
        model.bn_params.append(self.bn_param)
        self.relu = relu
        if len(self.in_shape) == 3:
            self._forward = conv_layers.spatial_batchnorm_relu_forward if relu else conv_layers.spatial_batchnorm_forward
            self._backward = conv_layers.spatial_batchnorm_backward  # its cache knows about the relu
        else:
            self._forward, self._backward = layers.batchnorm_forward, layers.batchnorm_backward

    def forward(self, params, x):
        out, cache = self._forward(x, params[self.gamma], params[self.beta], self.bn_param)
        if self.relu and len(self.in_shape) == 1:
            out, relu_cache = layers.relu_forward(out)
            cache = (cache, relu_cache)
        return out, cache

    def backward(self, params, dout, cache, grads, need_dx=True):
        if self.relu and len(self.in_shape) == 1:
            cache, relu_cache = cache
            dout = layers.relu_backward(dout, relu_cache)
        dx, grads[self.gamma], grads[self.beta] = self._backward(dout, cache)
        return dx


class ReLU(Block):
    def forward(self, params, x):
        return layers.relu_forward(x)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return layers.relu_backward(dout, cache)


class MaxPool(Block):
    """Max pooling over size x size windows (stride None is size)."""

    def __init__(self, name, in_shape, size, stride):
        super().__init__(in_shape)
        self.pool_param = pool_param(size, stride)
        self.out_shape = pool_shape(self.in_shape, size, stride, name)

    def forward(self, params, x):
        return conv_layers.max_pool_forward(x, self.pool_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return conv_layers.max_pool_backward(dout, cache)


class GlobalAvgPool(Block):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    def __init__(self, in_shape):
        super().__init__(in_shape)
        self.out_shape = (self.in_shape[0],)

    def forward(self, params, x):
        return x.mean(axis=(2, 3)), x.shape

    def backward(self, params, dout, cache, grads, need_dx=True):
        N, C, H, W = cache
        return np.broadcast_to((dout / (H * W))[:, :, None, None], cache).copy()


class Dropout(Block):
    """Inverted dropout keeping each unit with probability ``keep``."""

    def __init__(self, model, in_shape, keep):
        super().__init__(in_shape)
        self.dropout_param = {"mode": "train", "p": keep, "rng": model.rng}
        model.dropout_params.append(self.dropout_param)

    def forward(self, params, x):
        return layers.dropout_forward(x, self.dropout_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return layers.dropout_backward(dout, cache)


class Affine(Block):
    """Fully connected layer on the flattened input: (N, ...) -> (N, units).

    Weights are He-initialised unless ``weight_scale`` gives their standard deviation.
    """

    def __init__(self, model, name, in_shape, units, weight_scale=None):
        super().__init__(in_shape)
        fan_in = int(np.prod(self.in_shape))
        self.out_shape = (units,)
        self.w, self.b = f"{name}.W", f"{name}.b"
        if weight_scale is None:
            model.params[self.w] = he_normal(model.rng, (fan_in, units), fan_in, model.dtype)
        else:
            model.params[self.w] = (weight_scale * model.rng.standard_normal((fan_in, units))).astype(model.dtype)
        model.params[self.b] = np.zeros(units, dtype=model.dtype)

    def forward(self, params, x):
        return layers.affine_forward(x, params[self.w], params[self.b])

    def backward(self, params, dout, cache, grads, need_dx=True):
        dx, grads[self.w], grads[self.b] = layers.affine_backward(dout, cache)
        return dx


class Sequence(Block):
    """Blocks applied one after the other."""

    def __init__(self, in_shape, blocks):
        super().__init__(in_shape)
        self.blocks = blocks
        self.out_shape = blocks[-1].out_shape if blocks else self.in_shape

    def forward(self, params, x):
        caches = []
        for block in self.blocks:
            x, cache = block.forward(params, x)
            caches.append(cache)
        return x, caches

    def backward(self, params, dout, caches, grads, need_dx=True):
        for position in range(len(self.blocks) - 1, -1, -1):
            dout = self.blocks[position].backward(params, dout, caches[position], grads, need_dx or position > 0)
        return dout


class Residual(Block):
    """Basic residual block: relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)).

    Both convolutions are 3x3, stride 1, with ``filters`` outputs, so H and W are kept
    (downsample with a pool block: a 3x3 stride-2 filter does not tile an even-sized
    input, which convnet refuses rather than silently dropping a row). The shortcut
    is the identity when the channel count is unchanged, else a 1x1 convolution + bn.
    """

    def __init__(self, model, name, in_shape, filters):
        super().__init__(in_shape)
        bn = defaults(BATCHNORM_OPTIONS)
        conv1 = Conv(model, f"{name}.conv1", self.in_shape, filters, **RESIDUAL_CONV, bias=False)
        bn1 = BatchNorm(model, f"{name}.bn1", conv1.out_shape, **bn, relu=True)
        conv2 = Conv(model, f"{name}.conv2", conv1.out_shape, filters, **RESIDUAL_CONV, bias=False)
        bn2 = BatchNorm(model, f"{name}.bn2", conv2.out_shape, **bn)
        self.body = Sequence(self.in_shape, [conv1, bn1, conv2, bn2])
        self.out_shape = self.body.out_shape
        if self.out_shape == self.in_shape:
            self.shortcut = Sequence(self.in_shape, [])
        else:
            projection = Conv(model, f"{name}.proj", self.in_shape, filters, 1, 1, 0, bias=False)
            projection_bn = BatchNorm(model, f"{name}.proj_bn", projection.out_shape, **bn)
            self.shortcut = Sequence(self.in_shape, [projection, projection_bn])
        self.relu = ReLU(self.out_shape)

    def forward(self, params, x):
        body, body_cache = self.body.forward(params, x)
        short, short_cache = self.shortcut.forward(params, x)
        out, relu_cache = self.relu.forward(params, body + short)
        return out, (body_cache, short_cache, relu_cache)

    def backward(self, params, dout, cache, grads, need_dx=True):
        body_cache, short_cache, relu_cache = cache
        dsum = self.relu.backward(params, dout, relu_cache, grads)
        dx = self.body.backward(params, dsum, body_cache, grads, need_dx)
        dshort = self.shortcut.backward(params, dsum, short_cache, grads, need_dx)
        return dx + dshort if need_dx else None


# ---------------------------------------------------------------------------
# the registry: block type -> options, output shape, builder
# ---------------------------------------------------------------------------


class BlockType(NamedTuple):
    """One entry of BLOCKS.

    options: {name: Option}, what a layer-list entry of this type may set.
    shape: (in_shape, **options) -> out_shape, per image; raises ValueError when the block
    does not fit its input (validation infers every shape with it before building anything).
    build: (model, name, in_shape, **options) -> [Block, ...]; ``name(prefix)`` numbers the
    parameter prefixes ('conv' -> 'conv1', 'conv2', ...) across the whole network.
    images: True if the block needs (C, H, W) input (False: any shape, e.g. after global_avgpool).
    """

    options: dict
    shape: Callable
    build: Callable
    images: bool
    help: str


def _same(in_shape, **options):
    return tuple(in_shape)


def build_conv(model, name, in_shape, filters, size, stride, pad):
    return [Conv(model, name("conv"), in_shape, filters, size, stride, pad)]


def build_conv_relu(model, name, in_shape, filters, size, stride, pad):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad)
    return [conv, ReLU(conv.out_shape)]


def build_conv_bn_relu(model, name, in_shape, filters, size, stride, pad):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad, bias=False)
    # batch norm + ReLU: one fused kernel
    return [conv, BatchNorm(model, name("bn"), conv.out_shape, **defaults(BATCHNORM_OPTIONS), relu=True)]


def build_affine(model, name, in_shape, units):
    return [Affine(model, name("fc"), in_shape, units)]


def build_affine_relu(model, name, in_shape, units):
    affine = Affine(model, name("fc"), in_shape, units)
    return [affine, ReLU(affine.out_shape)]


BLOCKS = {
    "conv": BlockType(CONV_OPTIONS, conv_shape, build_conv, True, "convolution with a bias"),
    "conv_relu": BlockType(CONV_OPTIONS, conv_shape, build_conv_relu, True, "convolution, then ReLU"),
    "conv_bn_relu": BlockType(
        CONV_OPTIONS, conv_shape, build_conv_bn_relu, True,
        "convolution without a bias (the batch norm would cancel it), then spatial batch norm and ReLU"),
    "batchnorm": BlockType(
        BATCHNORM_OPTIONS, _same, lambda model, name, in_shape, momentum, eps: [BatchNorm(model, name("bn"), in_shape, momentum, eps)],
        False, "batch norm: spatial on images, vanilla on vectors"),
    "relu": BlockType({}, _same, lambda model, name, in_shape: [ReLU(in_shape)], False, "ReLU"),
    "pool": BlockType(
        POOL_OPTIONS, pool_shape, lambda model, name, in_shape, size, stride: [MaxPool(name("pool"), in_shape, size, stride)],
        True, "max pooling"),
    "residual": BlockType(
        {"filters": FILTERS},
        lambda in_shape, filters: conv_shape(in_shape, filters, **RESIDUAL_CONV),
        lambda model, name, in_shape, filters: [Residual(model, name("res"), in_shape, filters)],
        True, "relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), both convolutions 3x3 at stride 1; the "
              "shortcut is a 1x1 convolution + batch norm when the channel count changes"),
    "global_avgpool": BlockType(
        {}, lambda in_shape: (in_shape[0],), lambda model, name, in_shape: [GlobalAvgPool(in_shape)],
        True, "mean over H and W: (C, H, W) becomes (C,)"),
    "dropout": BlockType(
        DROPOUT_OPTIONS, _same, lambda model, name, in_shape, keep: [Dropout(model, in_shape, keep)],
        False, "inverted dropout"),
    "affine": BlockType(UNITS, lambda in_shape, units: (units,), build_affine, False, "fully connected layer"),
    "affine_relu": BlockType(UNITS, lambda in_shape, units: (units,), build_affine_relu, False,
                             "fully connected layer, then ReLU"),
}


def resolve_layers(layers, input_dim, where="layers", label="config key"):
    """Check a block list against BLOCKS and infer every block's output shape.

    layers: [type name or {"type": ..., options}]; input_dim: (C, H, W).
    Returns ([(type, {option: value})] with defaults filled in, [output shape per block]).
    Raises ConfigError naming the entry (``where[index]``), the key and, for a block that
    does not fit its input, the input shape (label: see convnet.options).
    """
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ConfigError(f"{label} '{where}' must be a non-empty list of blocks, got {layers!r}")
    spec, shapes = [], []
    shape = tuple(input_dim)
    for index, entry in enumerate(layers):
        here = f"{where}[{index}]"
        if isinstance(entry, str):
            entry = {"type": entry}
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"{label} '{here}' must be a block type name or a mapping with a 'type' key, "
                              f"got {entry!r}")
        options = dict(entry)
        kind = options.pop("type")
        block = choose(f"{here}.type", kind, BLOCKS, label)
        options = resolve(here, options, block.options, context=f" for {kind}", label=label)
        if block.images and len(shape) != 3:
            raise ConfigError(f"{label} '{here}' ({kind}) needs (C, H, W) input, but the blocks before it "
                              f"produce {shape}")
        try:
            shape = tuple(block.shape(shape, **options))
        except ValueError as exc:
            raise ConfigError(f"{label} '{here}' ({kind}) does not fit its input {shape}: {exc}") from None
        spec.append((kind, options))
        shapes.append(shape)
    return spec, shapes


#: The option input_dim of the models that take images: (C, H, W).
INPUT_DIM = Option([3, 32, 32], list, each=Option(REQUIRED, int, range=POSITIVE), length=3,
                   help="(C, H, W) of the input images")
