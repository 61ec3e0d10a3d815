"""The PyTorch twin of a convnet ConvNet, block by block, for the benchmarks.

    from torch_twin import build_torch_net, pair_parameters, copy_parameters
    net = build_torch_net(model)                   # nn.Sequential equal to the built ConvNet
    copy_parameters(model, pair_parameters(model, net))

twin_layers() reads the stages convnet's block registry built (not the block list) and needs
no torch; build_torch_net() turns them into torch.nn modules. benchmarks/bench_train.py times
the twin against convnet; benchmarks/bench_recipe.py trains a whole recipe with it.
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
        return layers + ([("ReLU", {})] if block.relu else [])

    def affine(block, params):
        fan_in, units = params[block.w].shape
        return [("Flatten", {}), ("Linear", {"in_features": fan_in, "out_features": units})]

    return {
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


def build_torch_net(model):
    """nn.Sequential equal to the ConvNet ``model`` (parameters registered in convnet's order)."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        """relu(body(x) + shortcut(x))."""

        def __init__(self, body, shortcut):
            super().__init__()
            self.body = sequential(body)
            self.shortcut = sequential(shortcut) if shortcut else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    def sequential(layers):
        return nn.Sequential(*[Residual(**args) if name == "Residual" else getattr(nn, name)(**args)
                               for name, args in layers])

    return sequential(twin_layers(model.network, model.params))


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
    """{convnet name: torch's parameter (or its gradient) as a numpy array laid out like convnet's}."""
    arrays = {}
    for name, param, transposed in pairs:
        value = (param.grad if grad else param).detach().numpy()
        arrays[name] = (value.T if transposed else value).copy()
    return arrays
