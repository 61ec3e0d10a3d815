"""Building blocks of :class:`convnet.models.ConvNet` and the registry of block types.

A block knows its input and output shapes (per image, without N), creates its
parameters in the model's ``params`` dict under its own name prefix, and offers
``forward(params, x) -> (out, cache)`` and ``backward(params, dout, cache, grads) -> dx``,
writing its parameter gradients into ``grads``. Weights use He initialisation,
N(0, 2 / fan_in), which keeps activations at a steady scale through ReLU layers, unless
a block's ``init`` option asks for another (see :func:`init_filters`).

Frozen parameters: ``model.freeze_after`` maps a parameter name to the epoch from which it is
frozen (blocks fill it: a whitening layer's filters, a batch norm's fixed scale), and
``model.frozen`` is the set frozen right now. A block spends no gradient work on a frozen
parameter (it is absent from ``grads``), and the first stage with something to train, when no
stage before it has any, skips its dx.

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
#: Filter initialisations of the convolutions (see init_filters).
INITS = ("he", "uniform", "dirac")
CONV_OPTIONS = {
    "filters": FILTERS,
    "size": Option(3, int, range=POSITIVE, help="filter side"),
    "stride": Option(1, int, range=POSITIVE),
    "pad": Option(None, (int, type(None)), range="[0, inf)", help='zero padding (null: (size - 1) // 2, "same")'),
    "init": Option("he", str, choices=INITS,
                   help="filters: he N(0, 2/fan_in); uniform U(+-1/sqrt(fan_in)); dirac: uniform, then the "
                        "first min(F, C) filters the identity"),
}
BATCHNORM_OPTIONS = {
    "momentum": Option(0.9, float, range="[0, 1]", help="weight of the old running statistics"),
    "eps": Option(1e-5, float, range="(0, inf)"),
    "scale": Option(True, bool, help="false: gamma stays 1 (a frozen parameter), only the shift is learnt"),
}
ACTIVATIONS = ("relu", "gelu")
CONV_BN_ACT_OPTIONS = {
    **CONV_OPTIONS,
    "activation": Option("relu", str, choices=ACTIVATIONS, help="after the batch norm (gelu: the exact erf form)"),
    **BATCHNORM_OPTIONS,
}
FLOOR = Option(False, bool, help="true: windows that do not fit are dropped (31 -> 15); false: refuse them")
CONV_POOL_BN_ACT_OPTIONS = {
    **CONV_BN_ACT_OPTIONS,
    "pool": Option(2, int, range=POSITIVE, help="max pooling window side (= its stride)"),
    "floor": FLOOR,
}
POOL_OPTIONS = {
    "size": Option(2, int, range=POSITIVE, help="window side"),
    "stride": Option(None, (int, type(None)), range=POSITIVE, help="null: = size"),
    "floor": FLOOR,
}
WHITEN_OPTIONS = {
    "size": Option(2, int, range=POSITIVE, help="patch side"),
    "eps": Option(5e-4, float, range="(0, inf)", help="added to each eigenvalue before the 1/sqrt"),
    "images": Option(5000, int, range=POSITIVE, help="training images whose patches give the covariance"),
    "bias_epochs": Option(None, (int, type(None)), range="[0, inf)",
                          help="null: the bias is trained for the whole run; k: frozen from epoch k on"),
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


def pool_param(size, stride, floor=False):
    """{'pool_height', 'pool_width', 'stride', 'floor'} of size x size max pooling; stride None is size."""
    return {"pool_height": size, "pool_width": size, "stride": size if stride is None else stride, "floor": floor}


def conv_shape(in_shape, filters, size, stride, pad, where="conv", **_):
    """(F, H', W') of a size x size convolution of (C, H, W); ValueError if it does not tile the input.
    Other options of a conv block (init, activation, ...) do not change the shape and are ignored."""
    _, H, W = in_shape
    param = conv_param(size, stride, pad)
    return (filters,
            window_output_size("height", H, size, param["stride"], param["pad"], f"{where} input", "filter"),
            window_output_size("width", W, size, param["stride"], param["pad"], f"{where} input", "filter"))


def pool_shape(in_shape, size, stride, floor=False, where="pool"):
    """(C, H', W') of size x size max pooling; ValueError if it does not tile the input (unless floor)."""
    C, H, W = in_shape
    param = pool_param(size, stride)
    return (C,
            window_output_size("height", H, size, param["stride"], 0, f"{where} input", "pool window", floor),
            window_output_size("width", W, size, param["stride"], 0, f"{where} input", "pool window", floor))


def conv_pool_shape(in_shape, filters, size, stride, pad, pool, floor, **_):
    """Shape after the convolution, then pool x pool max pooling at stride pool."""
    return pool_shape(conv_shape(in_shape, filters, size, stride, pad), pool, pool, floor, "pool")


def whiten_channels(in_shape, size):
    """Output channels of a whitening layer: 2 * C * size * size (each eigenvector and its negative)."""
    return 2 * in_shape[0] * size * size


def whiten_shape(in_shape, size, eps=None, images=None, bias_epochs=None):
    """(2*C*size*size, H - size + 1, W - size + 1); ValueError if the patch does not fit the input."""
    return conv_shape(in_shape, whiten_channels(in_shape, size), size, 1, 0, "whiten")


def he_normal(rng, shape, fan_in, dtype):
    """N(0, 2 / fan_in) weights (He et al.)."""
    return (np.sqrt(2.0 / fan_in) * rng.standard_normal(shape)).astype(dtype)


def uniform_fan_in(rng, shape, fan_in, dtype):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) values: PyTorch's default for conv and linear layers."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype(dtype)


def init_filters(rng, init, shape, dtype):
    """Filters (F, C, HH, WW) for ``init``: 'he' N(0, 2/fan_in), 'uniform' U(+-1/sqrt(fan_in)),
    'dirac' uniform, then filter i of the first min(F, C) the identity on channel i
    (1 at the centre tap (HH // 2, WW // 2), 0 elsewhere), so the layer starts by passing those
    channels through. fan_in = C * HH * WW."""
    F, C, HH, WW = shape
    fan_in = C * HH * WW
    if init == "he":
        return he_normal(rng, shape, fan_in, dtype)
    w = uniform_fan_in(rng, shape, fan_in, dtype)
    if init == "dirac":
        k = min(F, C)
        w[:k] = 0
        w[np.arange(k), np.arange(k), HH // 2, WW // 2] = 1
    elif init != "uniform":
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    return w


class Block:
    """A stage with no parameters unless a subclass adds some.

    ``param_names``: the names of the stage's parameters, () for none; a stage with parameters
    keeps the model in ``model`` (whose ``frozen`` set it reads in backward). None (a stage
    that does not say) counts as trainable, so its backward pass always runs.
    """

    param_names = None
    model = None

    def __init__(self, in_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape

    def forward(self, params, x):
        raise NotImplementedError

    def backward(self, params, dout, cache, grads, need_dx=True):
        raise NotImplementedError

    def trainable(self):
        """True when some parameter of this stage is not frozen right now (model.frozen)."""
        if self.param_names is None:
            return True
        return any(name not in self.model.frozen for name in self.param_names)

    def training(self, name):
        """True when the parameter ``name`` (of this stage, or None for an absent one) gets a gradient."""
        return name is not None and name not in self.model.frozen


class Conv(Block):
    """Convolution with F filters of size x size; pad None is (size - 1) // 2 ("same" at stride 1).

    bias=False leaves the bias out: before a batch norm it would be cancelled by the mean anyway.
    init: see :func:`init_filters` (None: zeros, for filters computed later); the bias starts at
    zero, or U(+-1/sqrt(fan_in)) with the uniform inits, as PyTorch's default.
    """

    def __init__(self, model, name, in_shape, filters, size, stride, pad, bias=True, init="he"):
        super().__init__(in_shape)
        C = self.in_shape[0]
        self.model = model
        self.conv_param = conv_param(size, stride, pad)
        self.out_shape = conv_shape(self.in_shape, filters, size, stride, pad, name)
        self.w = f"{name}.W"
        shape = (filters, C, size, size)
        if init is None:
            model.params[self.w] = np.zeros(shape, dtype=model.dtype)
        else:
            model.params[self.w] = init_filters(model.rng, init, shape, model.dtype)
        if bias:
            self.b = f"{name}.b"
            if init in ("uniform", "dirac"):
                model.params[self.b] = uniform_fan_in(model.rng, filters, C * size * size, model.dtype)
            else:
                model.params[self.b] = np.zeros(filters, dtype=model.dtype)
            self.param_names = (self.w, self.b)
        else:
            self.b = None
            self.zero_bias = np.zeros(filters, dtype=model.dtype)
            self.param_names = (self.w,)

    def forward(self, params, x):
        b = params[self.b] if self.b else self.zero_bias
        return conv_layers.conv_forward(x, params[self.w], b, self.conv_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        train_w, train_b = self.training(self.w), self.training(self.b)
        if not (need_dx or train_w or train_b):
            return None
        dx, dw, db = conv_layers.conv_backward(dout, cache, compute_dx=need_dx, compute_dw=train_w)
        if train_w:
            grads[self.w] = dw
        if train_b:
            grads[self.b] = db
        return dx


def patch_whitening_filters(x, size, eps):
    """Filters (2*C*size*size, C, size, size) float64 that whiten the size x size patches of x.

    x: (N, C, H, W) images (normalised, so their patches have mean ~0). With Sigma = E[p p^T] the
    (C*size*size)^2 second-moment matrix of the patches p (every position, each flattened in
    (C, size, size) order) and Sigma = V diag(lambda) V^T its eigendecomposition, filter k is
    V[:, k] / sqrt(lambda_k + eps): the outputs are decorrelated with variance lambda / (lambda + eps).
    The first half holds these, the second half their negatives (so a ReLU-like activation
    later keeps both signs).
    """
    N, C, H, W = x.shape
    D = C * size * size
    second_moment, count = np.zeros((D, D)), 0
    for start in range(0, N, 256):  # in chunks: 5000 images hold ~5M patches, 0.5 GB in float64
        chunk = np.asarray(x[start : start + 256], dtype=np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(chunk, (size, size), axis=(2, 3))  # (n, C, H', W', s, s)
        patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, D)
        second_moment += patches.T @ patches
        count += len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment / count)
    filters = (eigenvectors.T / np.sqrt(eigenvalues + eps)[:, None]).reshape(-1, C, size, size)
    return np.concatenate([filters, -filters])


class Whiten(Conv):
    """Patch-whitening convolution (size x size, stride 1, pad 0, with a bias) whose filters are
    computed from the training images by :meth:`initialize` (see :func:`patch_whitening_filters`)
    and never trained; the bias is trained, for the first ``bias_epochs`` epochs when given."""

    def __init__(self, model, name, in_shape, size, eps, images, bias_epochs):
        super().__init__(model, name, in_shape, whiten_channels(in_shape, size), size, 1, 0, bias=True, init=None)
        self.size, self.eps, self.images = size, eps, images
        model.freeze_after[self.w] = 0
        if bias_epochs is not None:
            model.freeze_after[self.b] = bias_epochs

    def initialize(self, params, x):
        """Set the filters from x (n, C, H, W), the images reaching this block (the first ``images``)."""
        params[self.w][...] = patch_whitening_filters(x[: self.images], self.size, self.eps)


class BatchNorm(Block):
    """Spatial batch norm on (C, H, W) inputs, vanilla batch norm on (D,) inputs.

    activation None, 'relu' or 'gelu' is applied to the output; on images it runs fused in
    the same kernel. scale=False keeps gamma at 1: it stays a parameter (the kernels and the
    checkpoints do not change) but is frozen from the start.
    """

    def __init__(self, model, name, in_shape, momentum, eps, activation=None, scale=True):
        super().__init__(in_shape)
        channels = self.in_shape[0]
        self.model = model
        self.gamma, self.beta = f"{name}.gamma", f"{name}.beta"
        self.param_names = (self.gamma, self.beta)
        model.params[self.gamma] = np.ones(channels, dtype=model.dtype)
        model.params[self.beta] = np.zeros(channels, dtype=model.dtype)
        if not scale:
            model.freeze_after[self.gamma] = 0
        self.bn_param = {"mode": "train", "momentum": momentum, "eps": eps}
        model.bn_params.append(self.bn_param)
        if activation not in (None,) + ACTIVATIONS:
            raise ValueError(f"activation must be None or one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.relu = activation == "relu"  # read by the ONNX export and the benchmark's twin
        fused = activation is not None and len(self.in_shape) == 3
        if len(self.in_shape) == 3:
            self._forward = {None: conv_layers.spatial_batchnorm_forward,
                             "relu": conv_layers.spatial_batchnorm_relu_forward,
                             "gelu": conv_layers.spatial_batchnorm_gelu_forward}[activation]
            self._backward = conv_layers.spatial_batchnorm_backward  # its cache knows the fused activation
        else:
            self._forward, self._backward = layers.batchnorm_forward, layers.batchnorm_backward
        # the activation applied after the normalisation, when it is not fused into its kernel
        self._activation = None if fused or activation is None else {
            "relu": (layers.relu_forward, layers.relu_backward),
            "gelu": (layers.gelu_forward_fast, layers.gelu_backward_fast)}[activation]

    def forward(self, params, x):
        out, cache = self._forward(x, params[self.gamma], params[self.beta], self.bn_param)
        if self._activation:
            out, activation_cache = self._activation[0](out)
            cache = (cache, activation_cache)
        return out, cache

    def backward(self, params, dout, cache, grads, need_dx=True):
        if self._activation:
            cache, activation_cache = cache
            dout = self._activation[1](dout, activation_cache)
        dx, dgamma, dbeta = self._backward(dout, cache)
        if self.training(self.gamma):
            grads[self.gamma] = dgamma
        if self.training(self.beta):
            grads[self.beta] = dbeta
        return dx


class Activation(Block):
    """An elementwise activation: ``layer`` is its (forward, backward) pair from convnet.layers."""

    param_names = ()
    layer = None

    def forward(self, params, x):
        return self.layer[0](x)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return self.layer[1](dout, cache) if need_dx else None


class ReLU(Activation):
    layer = (layers.relu_forward, layers.relu_backward)


class GELU(Activation):
    """The exact GELU, x * Phi(x), on the fast path (convnet.layers.gelu_forward_fast)."""

    layer = (layers.gelu_forward_fast, layers.gelu_backward_fast)


class MaxPool(Block):
    """Max pooling over size x size windows (stride None is size); floor drops windows that do not fit."""

    param_names = ()

    def __init__(self, name, in_shape, size, stride, floor=False):
        super().__init__(in_shape)
        self.pool_param = pool_param(size, stride, floor)
        self.out_shape = pool_shape(self.in_shape, size, stride, floor, name)

    def forward(self, params, x):
        return conv_layers.max_pool_forward(x, self.pool_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return conv_layers.max_pool_backward(dout, cache) if need_dx else None


class GlobalAvgPool(Block):
    """Mean over H and W: (N, C, H, W) -> (N, C)."""

    param_names = ()

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

    param_names = ()

    def __init__(self, model, in_shape, keep):
        super().__init__(in_shape)
        self.dropout_param = {"mode": "train", "p": keep, "rng": model.rng}
        model.dropout_params.append(self.dropout_param)

    def forward(self, params, x):
        return layers.dropout_forward(x, self.dropout_param)

    def backward(self, params, dout, cache, grads, need_dx=True):
        return layers.dropout_backward(dout, cache)


#: Weight initialisations of the affine layers: he N(0, 2/fan_in), small N(0, 0.01^2)
#: (initial scores near zero), uniform U(+-1/sqrt(fan_in)) (PyTorch's default, bias included).
AFFINE_INITS = ("he", "small", "uniform")


class Affine(Block):
    """Fully connected layer on the flattened input: (N, ...) -> (N, units), out = scale * (x W + b).

    init: one of AFFINE_INITS. bias=False leaves b out; scale is a fixed multiplier (not learnt).
    """

    def __init__(self, model, name, in_shape, units, init="he", bias=True, scale=1.0):
        super().__init__(in_shape)
        fan_in = int(np.prod(self.in_shape))
        self.model = model
        self.out_shape = (units,)
        self.scale = float(scale)
        self.w, self.b = f"{name}.W", (f"{name}.b" if bias else None)
        if init == "he":
            model.params[self.w] = he_normal(model.rng, (fan_in, units), fan_in, model.dtype)
        elif init == "small":
            model.params[self.w] = (0.01 * model.rng.standard_normal((fan_in, units))).astype(model.dtype)
        elif init == "uniform":
            model.params[self.w] = uniform_fan_in(model.rng, (fan_in, units), fan_in, model.dtype)
        else:
            raise ValueError(f"init must be one of {AFFINE_INITS}, got {init!r}")
        if bias:
            model.params[self.b] = (uniform_fan_in(model.rng, units, fan_in, model.dtype) if init == "uniform"
                                    else np.zeros(units, dtype=model.dtype))
            self.param_names = (self.w, self.b)
        else:
            self.zero_bias = np.zeros(units, dtype=model.dtype)
            self.param_names = (self.w,)

    def forward(self, params, x):
        out, cache = layers.affine_forward(x, params[self.w], params[self.b] if self.b else self.zero_bias)
        return (out * out.dtype.type(self.scale) if self.scale != 1 else out), cache

    def backward(self, params, dout, cache, grads, need_dx=True):
        if self.scale != 1:
            dout = dout * dout.dtype.type(self.scale)
        dx, dw, db = layers.affine_backward(dout, cache)
        if self.training(self.w):
            grads[self.w] = dw
        if self.training(self.b):
            grads[self.b] = db
        return dx


class Sequence(Block):
    """Blocks applied one after the other."""

    def __init__(self, in_shape, blocks):
        super().__init__(in_shape)
        self.blocks = blocks
        self.out_shape = blocks[-1].out_shape if blocks else self.in_shape

    def trainable(self):
        return any(block.trainable() for block in self.blocks)

    def forward(self, params, x):
        caches = []
        for block in self.blocks:
            x, cache = block.forward(params, x)
            caches.append(cache)
        return x, caches

    def backward(self, params, dout, caches, grads, need_dx=True):
        # A stage's dx is needed only when the caller needs it or a stage before it has something
        # to train; a stage that neither needs dx nor trains anything is skipped altogether.
        needs, anything_before = [], need_dx
        for block in self.blocks:
            needs.append(anything_before)
            anything_before = anything_before or block.trainable()
        for position in range(len(self.blocks) - 1, -1, -1):
            block = self.blocks[position]
            if not needs[position] and not block.trainable():
                return None
            dout = block.backward(params, dout, caches[position], grads, needs[position])
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
        bn1 = BatchNorm(model, f"{name}.bn1", conv1.out_shape, **bn, activation="relu")
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

    def trainable(self):
        return self.body.trainable() or self.shortcut.trainable()

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


def build_conv(model, name, in_shape, filters, size, stride, pad, init):
    return [Conv(model, name("conv"), in_shape, filters, size, stride, pad, init=init)]


def build_conv_relu(model, name, in_shape, filters, size, stride, pad, init):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad, init=init)
    return [conv, ReLU(conv.out_shape)]


def build_conv_bn_relu(model, name, in_shape, filters, size, stride, pad, init):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad, bias=False, init=init)
    # batch norm + ReLU: one fused kernel
    return [conv, BatchNorm(model, name("bn"), conv.out_shape, **defaults(BATCHNORM_OPTIONS), activation="relu")]


def build_conv_bn_act(model, name, in_shape, filters, size, stride, pad, init, activation, momentum, eps, scale):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad, bias=False, init=init)
    return [conv, BatchNorm(model, name("bn"), conv.out_shape, momentum, eps, activation, scale)]


def build_conv_pool_bn_act(model, name, in_shape, filters, size, stride, pad, init, activation, momentum, eps,
                           scale, pool, floor):
    conv = Conv(model, name("conv"), in_shape, filters, size, stride, pad, bias=False, init=init)
    # pooling before the batch norm: the normalisation and activation run on a quarter of the values
    pooling = MaxPool(name("pool"), conv.out_shape, pool, pool, floor)
    return [conv, pooling, BatchNorm(model, name("bn"), pooling.out_shape, momentum, eps, activation, scale)]


def build_whiten(model, name, in_shape, size, eps, images, bias_epochs):
    return [Whiten(model, name("whiten"), in_shape, size, eps, images, bias_epochs)]


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
    "conv_bn_act": BlockType(
        CONV_BN_ACT_OPTIONS, conv_shape, build_conv_bn_act, True,
        "convolution without a bias, then spatial batch norm (its momentum, eps, scale) and the activation"),
    "conv_pool_bn_act": BlockType(
        CONV_POOL_BN_ACT_OPTIONS, conv_pool_shape, build_conv_pool_bn_act, True,
        "convolution without a bias, max pooling (window = stride = pool), spatial batch norm, activation"),
    "whiten": BlockType(
        WHITEN_OPTIONS, whiten_shape, build_whiten, True,
        "patch-whitening convolution (stride 1, pad 0, 2*C*size*size outputs) with filters computed from the "
        "training images' patch covariance before training and frozen; its bias is trained"),
    "batchnorm": BlockType(
        BATCHNORM_OPTIONS, _same,
        lambda model, name, in_shape, momentum, eps, scale: [
            BatchNorm(model, name("bn"), in_shape, momentum, eps, scale=scale)],
        False, "batch norm: spatial on images, vanilla on vectors"),
    "relu": BlockType({}, _same, lambda model, name, in_shape: [ReLU(in_shape)], False, "ReLU"),
    "gelu": BlockType({}, _same, lambda model, name, in_shape: [GELU(in_shape)], False,
                      "GELU, the exact form x * Phi(x)"),
    "pool": BlockType(
        POOL_OPTIONS, pool_shape,
        lambda model, name, in_shape, size, stride, floor: [MaxPool(name("pool"), in_shape, size, stride, floor)],
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
