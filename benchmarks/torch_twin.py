"""The PyTorch twin of a convnet ConvNet, for the benchmarks, in two forms.

From a built model (bench_train.py: the same parameters, timed step against step):

    net = build_torch_net(model)                   # nn.Sequential equal to the built ConvNet
    copy_parameters(model, pair_parameters(model, net))

twin_layers() reads the stages convnet's block registry built (not the block list) and needs
no torch; build_torch_net() turns them into torch.nn modules.

From a config's block list (bench_recipe.py: a recipe trained by PyTorch on its own):

    twin = ConfigTwin(layers, input_dim, num_classes, head_bias=False, head_scale=1 / 9)
    net, params = twin.build(seed)                 # params: {convnet name: torch parameter}
    twin.initialize_from_data(net, X_train)        # the whitening filters

Both give the same [(torch.nn class name, arguments)] list for the same network, which is how
bench_recipe checks the config's twin against the network convnet builds.
"""

import functools

import numpy as np


def leaf_blocks(block):
    """The blocks that do the work, in parameter-creation order (Sequence and Residual opened)."""
    from convnet.models import blocks

    if isinstance(block, blocks.Sequence):
        return [leaf for child in block.blocks for leaf in leaf_blocks(child)]
    if isinstance(block, blocks.Residual):
        return leaf_blocks(block.body) + leaf_blocks(block.shortcut) + [block.relu]
    return [block]


def forward_flops(model, affine=True):
    """Flops of one image's forward pass through ``model``'s convolutions (whitening included) and,
    when ``affine``, its affine layers: 2 per multiply-add. The one count every benchmark uses."""
    from convnet.models import blocks

    flops = 0
    for block in leaf_blocks(model.network):
        if isinstance(block, blocks.Conv):
            filters, channels, height, width = model.params[block.w].shape
            flops += 2 * int(np.prod(block.out_shape)) * channels * height * width
        elif affine and isinstance(block, blocks.Affine):
            flops += 2 * model.params[block.w].size
    return flops


# ---------------------------------------------------------------------------
# the PyTorch twin
# ---------------------------------------------------------------------------


def twin_layers(block, params):
    """The PyTorch twin of a built convnet block, as [(torch.nn class name, arguments)].

    The twin follows the stages that the block registry's builders (convnet.models.blocks.BLOCKS)
    made, not the block list: a new block type built from existing stages needs nothing here,
    a new kind of stage one entry in twin_builders(). Needs no torch. Residual stages become
    ("Residual", {"body": [...], "shortcut": [...]}).
    """
    for cls in type(block).__mro__:
        builder = twin_builders().get(cls)
        if builder is not None:
            return builder(block, params)
    raise ValueError(f"no PyTorch twin for convnet stage {type(block).__name__}")


@functools.cache
def twin_builders():
    """{convnet stage class: (stage, params) -> [(torch.nn class name, arguments)]}."""
    from convnet.models import blocks

    def conv(block, params):
        filters, channels, size, _ = params[block.w].shape
        return [("Conv2d", {"in_channels": channels, "out_channels": filters, "kernel_size": size,
                            "stride": block.conv_param["stride"], "padding": block.conv_param["pad"],
                            "bias": block.b is not None})]

    def batchnorm(block, params):
        # torch's momentum weighs the new batch, convnet's the running average; eps is the same
        norm = "BatchNorm2d" if len(block.in_shape) == 3 else "BatchNorm1d"
        layers = [(norm, {"num_features": block.in_shape[0], "eps": block.bn_param["eps"],
                          "momentum": 1 - block.bn_param["momentum"]})]
        # a fused activation: relu=True, or (issue 11) activation 'relu' | 'gelu'
        activation = getattr(block, "activation", "relu" if block.relu else None)
        return layers + ([(ACTIVATIONS[activation], {})] if activation else [])

    def affine(block, params):
        fan_in, units = params[block.w].shape
        scale = float(getattr(block, "scale", 1.0))  # a fixed multiplier of the outputs (the head's, issue 11)
        return [("Flatten", {}), ("Linear", {"in_features": fan_in, "out_features": units,
                                             "bias": block.b is not None})] + \
               ([("Mul", {"factor": scale})] if scale != 1.0 else [])

    # Stages of the issue-11 blocks, twinned where convnet has them: GELU (the whitening block is a
    # Conv). A frozen batch-norm scale and floor-mode pooling need nothing: torch's BatchNorm2d is
    # the same function, MaxPool2d floors. What is frozen is applied by freeze_frozen().
    optional = {blocks.GELU: lambda block, params: [("GELU", {})]} if hasattr(blocks, "GELU") else {}

    return {
        **optional,
        blocks.Sequence: lambda block, params: [layer for child in block.blocks for layer in twin_layers(child, params)],
        blocks.Residual: lambda block, params: [("Residual", {"body": twin_layers(block.body, params),
                                                              "shortcut": twin_layers(block.shortcut, params)})],
        blocks.Conv: conv,
        blocks.BatchNorm: batchnorm,
        blocks.ReLU: lambda block, params: [("ReLU", {})],
        blocks.MaxPool: lambda block, params: [("MaxPool2d", {"kernel_size": block.pool_param["pool_height"],
                                                              "stride": block.pool_param["stride"]})],
        # the mean over H, W: (N, C)
        blocks.GlobalAvgPool: lambda block, params: [("AdaptiveAvgPool2d", {"output_size": 1}), ("Flatten", {})],
        # torch's p drops, convnet's keep keeps
        blocks.Dropout: lambda block, params: [("Dropout", {"p": 1 - block.dropout_param["p"]})],
        blocks.Affine: affine,
    }


def torch_sequential(layers):
    """nn.Sequential of [(class name, arguments)]: torch.nn classes, plus "Residual" and "Mul"."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        """relu(body(x) + shortcut(x))."""

        def __init__(self, body, shortcut):
            super().__init__()
            self.body = torch_sequential(body)
            self.shortcut = torch_sequential(shortcut) if shortcut else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    class Mul(nn.Module):
        """factor * x, a fixed multiplier."""

        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return self.factor * x

    local = {"Residual": Residual, "Mul": Mul}
    return nn.Sequential(*[(local.get(name) or getattr(nn, name))(**args) for name, args in layers])


def build_torch_net(model):
    """nn.Sequential equal to the ConvNet ``model`` (parameters registered in convnet's order)."""
    return torch_sequential(twin_layers(model.network, model.params))


def freeze_frozen(model, pairs):
    """Stop torch from training what convnet keeps frozen from the start (model.freeze_after at 0:
    a whitening filter, a batch-norm scale with scale: false); returns their names."""
    frozen = {name for name, epoch in getattr(model, "freeze_after", {}).items() if epoch == 0}
    for name, param, _ in pairs:
        param.requires_grad_(name not in frozen)
    return sorted(frozen)


def pair_parameters(model, net):
    """[(convnet name, torch parameter, transposed)] for every parameter, matched in order.

    convnet's Conv, BatchNorm and Affine blocks are paired with torch's Conv2d, BatchNorm
    and Linear modules; affine weights are (D, M) in convnet and (M, D) in torch.
    Raises ValueError if the two networks do not have the same layers and shapes.
    """
    from torch import nn

    from convnet.models import blocks

    ours = [b for b in leaf_blocks(model.network) if isinstance(b, (blocks.Conv, blocks.BatchNorm, blocks.Affine))]
    theirs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear))]
    if len(ours) != len(theirs):
        raise ValueError(f"convnet has {len(ours)} parameter layers, the torch twin {len(theirs)}")
    pairs = []
    for block, module in zip(ours, theirs):
        if isinstance(block, blocks.BatchNorm):
            names = [(block.gamma, module.weight, False), (block.beta, module.bias, False)]
        else:
            bias = [(block.b, module.bias, False)] if block.b else []
            names = [(block.w, module.weight, isinstance(block, blocks.Affine))] + bias
        if (module.bias is None) != (len(names) == 1):
            raise ValueError(f"{names[0][0]}: bias in one network only ({module})")
        for name, param, transposed in names:
            shape = model.params[name].shape[::-1] if transposed else model.params[name].shape
            if tuple(param.shape) != shape:
                raise ValueError(f"{name} has shape {shape} (as torch lays it out), the torch twin {module} "
                                 f"{tuple(param.shape)}")
        pairs += names
    return pairs


def copy_parameters(model, pairs):
    """Give the torch twin convnet's current parameter values."""
    import torch

    with torch.no_grad():
        for name, param, transposed in pairs:
            value = model.params[name].T if transposed else model.params[name]
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def torch_arrays(pairs, grad=False):
    """{convnet name: torch's parameter (or its gradient) as a numpy array laid out like convnet's};
    with grad, the parameters without a gradient (frozen) are left out, as convnet's grads leave them."""
    arrays = {}
    for name, param, transposed in pairs:
        if grad and param.grad is None:
            continue
        value = (param.grad if grad else param).detach().numpy()
        arrays[name] = (value.T if transposed else value).copy()
    return arrays


# ---------------------------------------------------------------------------
# the twin of a config's block list, for training a whole recipe in PyTorch
# ---------------------------------------------------------------------------

#: The block options agreed for issue 11 (coordination schema), with their defaults: used for the
#: options convnet's block registry does not declare (yet); convnet's own declarations win.
SCHEMA_OPTIONS = {
    "conv": {"size": 3, "stride": 1, "pad": None, "init": "he"},
    "conv_bn_act": {"size": 3, "stride": 1, "pad": None, "init": "he", "activation": "relu",
                    "momentum": 0.9, "eps": 1e-5, "scale": True},
    "pool": {"size": 2, "stride": None, "floor": False},
    "batchnorm": {"momentum": 0.9, "eps": 1e-5, "scale": True},
    "whiten": {"size": 2, "eps": 5e-4, "images": 5000, "bias_epochs": None},
    "dropout": {"keep": 0.5},
}
SCHEMA_OPTIONS["conv_relu"] = SCHEMA_OPTIONS["conv"]
SCHEMA_OPTIONS["conv_bn_relu"] = {**SCHEMA_OPTIONS["conv_bn_act"], "activation": "relu"}
SCHEMA_OPTIONS["conv_pool_bn_act"] = {**SCHEMA_OPTIONS["conv_bn_act"], "pool": 2, "floor": False}
#: The model options of the head (issue 11) and their defaults.
HEAD_OPTIONS = {"head_bias": True, "head_scale": 1.0, "head_init": "small"}
ACTIVATIONS = {"relu": "ReLU", "gelu": "GELU"}


def block_options(kind, given):
    """The options of one block-list entry with every default filled in (convnet's, else SCHEMA_OPTIONS)."""
    from convnet.models import blocks

    declared = blocks.BLOCKS[kind].options if kind in blocks.BLOCKS else {}
    options = {**SCHEMA_OPTIONS.get(kind, {}), **blocks.defaults(declared), **given}
    known = set(SCHEMA_OPTIONS.get(kind, {})) | set(declared) | {"filters", "units"}
    unknown = sorted(set(given) - known)
    if unknown or (kind not in SCHEMA_OPTIONS and kind not in blocks.BLOCKS
                   and kind not in ("gelu", "relu", "global_avgpool", "affine", "affine_relu", "residual")):
        raise ValueError(f"the PyTorch twin does not know block {kind!r}" + (f" option(s) {unknown}" if unknown else ""))
    return options


class ConfigTwin:
    """The PyTorch twin of a ConvNet block list, built from the config (not from convnet's built stages).

    layers: [(torch class name, arguments)], the format of twin_layers(), so the two can be compared.
    params: [(convnet parameter name, index of the parameter layer, 'weight' | 'bias', init)], in
    convnet's parameter-creation order (the Conv2d/BatchNorm/Linear modules in order).
    freeze_after: {convnet name: epoch} as the blocks declare it (whitening filter 0, its bias
    bias_epochs, a batch-norm scale with scale: false 0). whiten: [(parameter layer index, eps, images)].
    """

    def __init__(self, layers, input_dim=(3, 32, 32), num_classes=10, head_bias=True, head_scale=1.0,
                 head_init="small"):
        self.layers, self.params, self.freeze_after, self.whiten = [], [], {}, []
        self._param_layers = 0
        self._counters = {}
        shape = tuple(input_dim)
        for entry in layers:
            entry = {"type": entry} if isinstance(entry, str) else dict(entry)
            kind = entry.pop("type")
            shape = self._block(kind, block_options(kind, entry), shape, self.layers)
        self.layers.append(("Flatten", {}))
        self._linear(self.layers, "fc_out", int(np.prod(shape)), num_classes, head_bias, head_init)
        if head_scale != 1.0:
            self.layers.append(("Mul", {"factor": float(head_scale)}))

    def _name(self, prefix):
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}{self._counters[prefix]}"

    def _param(self, name, attribute, init):
        self.params.append((name, self._param_layers, attribute, init))

    def _conv(self, out, name, shape, filters, size, stride, pad, bias, init):
        C, H, W = shape
        pad = (size - 1) // 2 if pad is None else pad
        Ho, Wo = (H + 2 * pad - size) // stride + 1, (W + 2 * pad - size) // stride + 1
        out.append(("Conv2d", {"in_channels": C, "out_channels": filters, "kernel_size": size, "stride": stride,
                               "padding": pad, "bias": bias}))
        self._param(f"{name}.W", "weight", init)
        if bias:
            self._param(f"{name}.b", "bias", "uniform" if init in ("uniform", "dirac") else "zeros")
        self._param_layers += 1
        return filters, Ho, Wo

    def _batchnorm(self, out, name, shape, momentum, eps, scale):
        out.append(("BatchNorm2d" if len(shape) == 3 else "BatchNorm1d",
                    {"num_features": shape[0], "eps": eps, "momentum": 1 - momentum}))
        self._param(f"{name}.gamma", "weight", "ones")
        self._param(f"{name}.beta", "bias", "zeros")
        if not scale:
            self.freeze_after[f"{name}.gamma"] = 0
        self._param_layers += 1
        return shape

    def _linear(self, out, name, fan_in, units, bias=True, init="he"):
        out.append(("Linear", {"in_features": fan_in, "out_features": units, "bias": bias}))
        self._param(f"{name}.W", "weight", init)
        if bias:
            self._param(f"{name}.b", "bias", "uniform" if init == "uniform" else "zeros")
        self._param_layers += 1
        return (units,)

    @staticmethod
    def _pool(out, shape, size, stride):
        stride = size if stride is None else stride
        C, H, W = shape
        out.append(("MaxPool2d", {"kernel_size": size, "stride": stride}))  # floor mode: convnet checked strictness
        return C, (H - size) // stride + 1, (W - size) // stride + 1

    def _block(self, kind, o, shape, out):
        conv = {key: o[key] for key in ("size", "stride", "pad")} if "filters" in o and kind != "residual" else {}
        if kind in ("conv", "conv_relu"):
            shape = self._conv(out, self._name("conv"), shape, o["filters"], **conv, bias=True, init=o["init"])
            out += [("ReLU", {})] if kind == "conv_relu" else []
        elif kind in ("conv_bn_relu", "conv_bn_act", "conv_pool_bn_act"):
            shape = self._conv(out, self._name("conv"), shape, o["filters"], **conv, bias=False, init=o["init"])
            if kind == "conv_pool_bn_act":
                self._name("pool")
                shape = self._pool(out, shape, o["pool"], None)
            shape = self._batchnorm(out, self._name("bn"), shape, o["momentum"], o["eps"], o["scale"])
            out.append((ACTIVATIONS[o["activation"]], {}))
        elif kind == "whiten":
            name = self._name("whiten")
            self.whiten.append((self._param_layers, o["eps"], o["images"]))
            shape = self._conv(out, name, shape, 2 * shape[0] * o["size"] ** 2, o["size"], 1, 0, bias=True,
                               init="whiten")
            self.freeze_after[f"{name}.W"] = 0
            if o["bias_epochs"] is not None:
                self.freeze_after[f"{name}.b"] = o["bias_epochs"]
        elif kind == "pool":
            self._name("pool")
            shape = self._pool(out, shape, o["size"], o["stride"])
        elif kind == "batchnorm":
            shape = self._batchnorm(out, self._name("bn"), shape, o["momentum"], o["eps"], o["scale"])
        elif kind in ("relu", "gelu"):
            out.append((ACTIVATIONS[kind], {}))
        elif kind == "global_avgpool":
            out += [("AdaptiveAvgPool2d", {"output_size": 1}), ("Flatten", {})]
            shape = (shape[0],)
        elif kind == "dropout":
            out.append(("Dropout", {"p": 1 - o["keep"]}))
        elif kind in ("affine", "affine_relu"):
            out.append(("Flatten", {}))
            shape = self._linear(out, self._name("fc"), int(np.prod(shape)), o["units"])
            out += [("ReLU", {})] if kind == "affine_relu" else []
        elif kind == "residual":
            shape = self._residual(out, self._name("res"), shape, o["filters"])
        return shape

    def _residual(self, out, name, shape, filters):
        body, shortcut = [], []
        conv = {"size": 3, "stride": 1, "pad": None, "bias": False, "init": "he"}
        inner = self._conv(body, f"{name}.conv1", shape, filters, **conv)
        self._batchnorm(body, f"{name}.bn1", inner, 0.9, 1e-5, True)
        body.append(("ReLU", {}))
        inner = self._conv(body, f"{name}.conv2", inner, filters, **conv)
        self._batchnorm(body, f"{name}.bn2", inner, 0.9, 1e-5, True)
        if inner != shape:
            self._conv(shortcut, f"{name}.proj", shape, filters, 1, 1, 0, bias=False, init="he")
            self._batchnorm(shortcut, f"{name}.proj_bn", inner, 0.9, 1e-5, True)
        out.append(("Residual", {"body": body, "shortcut": shortcut}))
        return inner

    def build(self, seed):
        """(nn.Sequential, {convnet name: torch parameter}), initialised from torch's generator seeded ``seed``.

        he: N(0, 2 / fan_in); uniform: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (torch's default); dirac: uniform,
        then the first min(F, C) filters the identity; small: N(0, 0.01^2). Biases: uniform with the uniform
        and dirac inits (torch's default), else 0; batch-norm scales 1, shifts 0. Whitening filters (and
        their bias) start at 0 and are set by initialize_from_data().
        """
        import torch
        from torch import nn

        net = torch_sequential(self.layers)
        modules = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Linear))]
        generator = torch.Generator().manual_seed(seed)
        params = {}
        with torch.no_grad():
            for name, index, attribute, init in self.params:
                param = getattr(modules[index], attribute)
                fan_in = modules[index].weight[0].numel()  # a bias takes its layer's fan-in
                if init in ("he", "uniform", "dirac", "small"):
                    if init == "he":
                        param.normal_(0.0, float(np.sqrt(2.0 / fan_in)), generator=generator)
                    elif init == "small":
                        param.normal_(0.0, 0.01, generator=generator)
                    else:
                        bound = 1 / np.sqrt(fan_in)
                        param.uniform_(-bound, bound, generator=generator)
                    if init == "dirac":
                        identity = min(param.shape[0], param.shape[1])
                        nn.init.dirac_(param[:identity])
                elif init in ("zeros", "whiten"):
                    param.zero_()
                elif init == "ones":
                    param.fill_(1.0)
                params[name] = param
        self._modules = modules
        return net, params

    def initialize_from_data(self, net, X):
        """Set every whitening convolution's filters from the images X (N, C, H, W) (a torch tensor) that
        reach it: the first ``images`` of them, every size x size patch, their second-moment matrix
        P^T P / n; filters = eigenvectors / sqrt(eigenvalue + eps), in increasing eigenvalue order as
        convnet's whiten block has them (the order does not change the network), then the same filters
        negated."""
        import torch

        for index, eps, images in self.whiten:
            conv = self._modules[index]
            captured = {}
            hook = conv.register_forward_pre_hook(lambda module, inputs: captured.setdefault("x", inputs[0]))
            with torch.no_grad():
                try:
                    net.eval()(X[:images])
                finally:
                    hook.remove()
                x = captured["x"].float()
                C, size = x.shape[1], conv.kernel_size[0]
                patches = x.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, H', W', size, size)
                patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, C * size * size).double()
                covariance = patches.T @ patches / len(patches)
                eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
                filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.reshape(-1, C, size, size)
                conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))
        net.train()


def model_head_options(model_config):
    """{head_bias, head_scale, head_init} of a config's model section (defaults filled in)."""
    return {key: model_config.get(key, default) for key, default in HEAD_OPTIONS.items()}
