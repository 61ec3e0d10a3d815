"""A trained ConvNet as an ONNX graph in inference mode, built with onnx.helper.

    graph = to_onnx(convnet.load_model("runs/quickstart/20261126-101500"))
    onnx.save(graph, "model.onnx")

The graph takes what :meth:`convnet.inference.TrainedModel.predict_proba` takes, raw uint8
images (N, H, W, 3) named :data:`INPUT_NAME`, and does everything inside: the cast to float32,
the transpose to (N, C, H, W), the run's normalisation (stored mean and std), then the blocks.
Batch norm is exported with its running statistics (ONNX BatchNormalization in inference mode),
dropout is left out (inverted dropout is the identity at test time), GELU is written with Erf
(opset 17 has no Gelu operator), pooling in floor mode is ONNX MaxPool's own default (ceil_mode 0),
and the head's fixed scale is Gemm's alpha and beta. Outputs: :data:`LOGITS`
(N, num_classes) float32 class scores and :data:`PROBABILITIES`, their softmax. Opset
:data:`OPSET`; the metadata entry ``class_names`` holds the class names as a JSON list.
Deploying the file needs only an ONNX runtime, no convnet code.

Each block class of :mod:`convnet.models.blocks` is exported by the function :data:`EXPORTERS`
maps it to; a block without one raises :class:`ExportError` naming it.
"""

import json

import numpy as np

from convnet.models import ConvNet, blocks

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17: runtimes back to onnxruntime 1.11 read it
INPUT_NAME, LOGITS, PROBABILITIES = "images", "logits", "probabilities"


class ExportError(ValueError):
    """The model, or one of its blocks, has no ONNX form."""


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx package: pip install 'convnet[onnx]'") from None
    return onnx, helper, numpy_helper


class GraphBuilder:
    """Nodes and float32 initializers of a graph under construction, with unique names."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, hint, array, dtype=np.float32):
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def node(self, op, inputs, hint=None, **attributes):
        """Add one node; returns the name of its (single) output."""
        output = self.name(hint or op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


# ----------------------------------------------------------------------
# one exporter per block class: (builder, block, params, x) -> output name
# ----------------------------------------------------------------------


def _conv(g, block, params, x):
    F, _, HH, WW = params[block.w].shape
    pad, stride = block.conv_param["pad"], block.conv_param["stride"]
    bias = params[block.b] if block.b else np.zeros(F)  # no bias before a batch norm: ONNX Conv takes zeros
    prefix = block.w.rsplit(".", 1)[0]
    return g.node("Conv", [x, g.constant(block.w, params[block.w]), g.constant(f"{prefix}.b", bias)], "conv",
                  kernel_shape=[HH, WW], strides=[stride, stride], pads=[pad, pad, pad, pad])


def _batchnorm(g, block, params, x):
    channels = params[block.gamma].shape[0]
    mean = block.bn_param.get("running_mean", np.zeros(channels))  # before any training step: convnet's defaults
    var = block.bn_param.get("running_var", np.ones(channels))
    prefix = block.gamma.rsplit(".", 1)[0]
    inputs = [x, g.constant(block.gamma, params[block.gamma]), g.constant(block.beta, params[block.beta]),
              g.constant(f"{prefix}.running_mean", mean), g.constant(f"{prefix}.running_var", var)]
    out = g.node("BatchNormalization", inputs, "bn", epsilon=float(block.bn_param.get("eps", 1e-5)))
    return {None: lambda x: x, "relu": lambda x: g.node("Relu", [x]), "gelu": lambda x: _gelu_nodes(g, x)}[
        block.activation](out)


def _relu(g, block, params, x):
    return g.node("Relu", [x])


def _gelu_nodes(g, x):
    """x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))), the exact GELU, in opset-17 operators."""
    erf = g.node("Erf", [g.node("Mul", [x, g.constant("inv_sqrt2", np.float32(1 / np.sqrt(2)))])])
    cdf = g.node("Mul", [g.node("Add", [erf, g.constant("one", np.float32(1))]), g.constant("half", np.float32(0.5))])
    return g.node("Mul", [x, cdf], "gelu")


def _gelu(g, block, params, x):
    return _gelu_nodes(g, x)


def _max_pool(g, block, params, x):
    p = block.pool_param
    return g.node("MaxPool", [x], "pool", kernel_shape=[p["pool_height"], p["pool_width"]],
                  strides=[p["stride"], p["stride"]])


def _global_avg_pool(g, block, params, x):
    return g.node("Flatten", [g.node("GlobalAveragePool", [x])], axis=1)


def _dropout(g, block, params, x):
    return x  # inverted dropout: the identity at test time


def _affine(g, block, params, x):
    flat = g.node("Flatten", [x], axis=1) if len(block.in_shape) > 1 else x  # (N, C, H, W) in C order, as numpy
    inputs = [flat, g.constant(block.w, params[block.w])] + ([g.constant(block.b, params[block.b])] if block.b else [])
    # Gemm: alpha * (x W) + beta * b, so a fixed scale s of the scores is alpha = beta = s
    return g.node("Gemm", inputs, "fc", alpha=block.scale, beta=block.scale)


def _sequence(g, block, params, x):
    for position, inner in enumerate(block.blocks):
        x = export_block(g, inner, params, x, position)
    return x


def _residual(g, block, params, x):
    body = _sequence(g, block.body, params, x)
    shortcut = _sequence(g, block.shortcut, params, x)
    return g.node("Relu", [g.node("Add", [body, shortcut])])


#: Block class -> exporter. A new block class adds its exporter here.
EXPORTERS = {
    blocks.Conv: _conv,
    blocks.Whiten: _conv,  # a convolution with frozen filters
    blocks.BatchNorm: _batchnorm,
    blocks.ReLU: _relu,
    blocks.GELU: _gelu,
    blocks.MaxPool: _max_pool,
    blocks.GlobalAvgPool: _global_avg_pool,
    blocks.Dropout: _dropout,
    blocks.Affine: _affine,
    blocks.Sequence: _sequence,
    blocks.Residual: _residual,
}


def export_block(g, block, params, x, position):
    exporter = EXPORTERS.get(type(block))
    if exporter is None:
        raise ExportError(f"block {position} ({type(block).__name__}) cannot be exported to ONNX: convnet has no "
                          f"ONNX form for it (exportable: {', '.join(sorted(c.__name__ for c in EXPORTERS))})")
    return exporter(g, block, params, x)


def _normalize(g, normalization, x):
    kind = normalization["normalization"]
    if kind is None:
        return x
    x = g.node("Sub", [x, g.constant("mean", np.asarray(normalization["mean"])[None])], "centred")
    if kind == "per_channel":
        x = g.node("Div", [x, g.constant("std", np.asarray(normalization["std"])[None])], "normalized")
    return x


def to_onnx(trained):
    """The ONNX ModelProto of a :class:`convnet.inference.TrainedModel` whose model is a ConvNet.

    Raises ExportError for another model type or a block without an exporter (named), ImportError
    without the onnx package.
    """
    onnx, helper, numpy_helper = _onnx()
    model = trained.model
    if not isinstance(model, ConvNet):
        raise ExportError(f"only ConvNet models export to ONNX; this checkpoint holds a {type(model).__name__}")
    g = GraphBuilder(helper, numpy_helper)
    H, W, C = trained.input_shape
    x = g.node("Cast", [INPUT_NAME], "float_images", to=onnx.TensorProto.FLOAT)
    x = g.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    x = _normalize(g, trained.normalization, x)
    for position, block in enumerate(model.network.blocks):
        x = export_block(g, block, model.params, x, position)
    num_classes = len(trained.class_names)
    g.nodes.append(helper.make_node("Identity", [x], [LOGITS], name=LOGITS))
    g.nodes.append(helper.make_node("Softmax", [LOGITS], [PROBABILITIES], name=PROBABILITIES, axis=1))
    graph = helper.make_graph(
        g.nodes, "convnet", [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, ["N", H, W, C])],
        [helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, ["N", num_classes]),
         helper.make_tensor_value_info(PROBABILITIES, onnx.TensorProto.FLOAT, ["N", num_classes])],
        g.initializers)
    exported = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="convnet",
                                 ir_version=IR_VERSION)
    helper.set_model_props(exported, {"class_names": json.dumps(trained.class_names)})
    onnx.checker.check_model(exported)
    return exported


def export(trained, path):
    """Write :func:`to_onnx` of ``trained`` to ``path``, atomically; returns the ModelProto."""
    from convnet.checkpoint import write_atomically

    onnx, _, _ = _onnx()
    exported = to_onnx(trained)
    write_atomically(path, lambda temporary: onnx.save(exported, temporary))
    return exported
