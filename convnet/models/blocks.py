"""Building blocks of :class:`convnet.models.ConvNet`.

A block knows its input and output shapes (per image, without N), creates its
parameters in the model's ``params`` dict under its own name prefix, and offers
``forward(params, x) -> (out, cache)`` and ``backward(params, dout, cache, grads) -> dx``,
writing its parameter gradients into ``grads``. Weights use He initialisation,
N(0, 2 / fan_in), which keeps activations at a steady scale through ReLU layers.
"""

import numpy as np

from convnet import conv_layers, layers
from convnet.checks import window_output_size


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
    """Convolution with F filters of size x size; pad defaults to (size - 1) // 2 ("same" at stride 1).

    bias=False leaves the bias out: before a batch norm it would be cancelled by the mean anyway.
    """

    def __init__(self, model, name, in_shape, filters, size=3, stride=1, pad=None, bias=True):
        super().__init__(in_shape)
        C, H, W = self.in_shape
        pad = (size - 1) // 2 if pad is None else pad
        self.conv_param = {"stride": stride, "pad": pad}
        out_h = window_output_size("height", H, size, stride, pad, f"{name} input", "filter")
        out_w = window_output_size("width", W, size, stride, pad, f"{name} input", "filter")
        self.out_shape = (filters, out_h, out_w)
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

    def __init__(self, model, name, in_shape, momentum=0.9, eps=1e-5, relu=False):
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
    """Max pooling over size x size windows (stride defaults to size)."""

    def __init__(self, name, in_shape, size=2, stride=None):
        super().__init__(in_shape)
        stride = size if stride is None else stride
        self.pool_param = {"pool_height": size, "pool_width": size, "stride": stride}
        C, H, W = self.in_shape
        self.out_shape = (
            C,
            window_output_size("height", H, size, stride, 0, f"{name} input", "pool window"),
            window_output_size("width", W, size, stride, 0, f"{name} input", "pool window"),
        )

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

    def __init__(self, model, in_shape, keep=0.5):
        super().__init__(in_shape)
        if not 0 < keep <= 1:
            raise ValueError(f"dropout keep must be a probability in (0, 1], got {keep}")
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
        conv1 = Conv(model, f"{name}.conv1", self.in_shape, filters, 3, 1, bias=False)
        bn1 = BatchNorm(model, f"{name}.bn1", conv1.out_shape, relu=True)
        conv2 = Conv(model, f"{name}.conv2", conv1.out_shape, filters, 3, 1, bias=False)
        bn2 = BatchNorm(model, f"{name}.bn2", conv2.out_shape)
        self.body = Sequence(self.in_shape, [conv1, bn1, conv2, bn2])
        self.out_shape = self.body.out_shape
        if self.out_shape == self.in_shape:
            self.shortcut = Sequence(self.in_shape, [])
        else:
            projection = Conv(model, f"{name}.proj", self.in_shape, filters, 1, 1, pad=0, bias=False)
            self.shortcut = Sequence(self.in_shape, [projection, BatchNorm(model, f"{name}.proj_bn", projection.out_shape)])
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
