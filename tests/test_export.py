"""ONNX export: the exported graph, run in onnxruntime on real images, gives convnet's logits."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

onnx = pytest.importorskip("onnx")  # the onnx extra; part of the test extra, so CI runs these
onnxruntime = pytest.importorskip("onnxruntime")

import convnet  # noqa: E402
from convnet import export, onnx_export, train  # noqa: E402
from convnet.data import load_sample  # noqa: E402
from convnet.models import ConvNet, blocks  # noqa: E402

from runs import only_run_dir, write_config  # noqa: E402

# Every block type, fused conv+bn+relu and residual blocks (identity and projection shortcuts),
# a strided padded convolution, overlapping pooling, dropout, global pooling, vector batch norm.
EVERY_BLOCK = [
    {"type": "conv_bn_relu", "filters": 8}, {"type": "residual", "filters": 8}, "pool",
    {"type": "residual", "filters": 12}, {"type": "conv_relu", "filters": 6, "size": 5},
    {"type": "conv", "filters": 6, "size": 4, "stride": 2, "pad": 1}, {"type": "pool", "size": 3, "stride": 1},
    {"type": "dropout", "keep": 0.8}, "global_avgpool", {"type": "affine_relu", "units": 16}, "batchnorm",
    {"type": "relu"}, {"type": "affine", "units": 12},
]
DOCS = Path(__file__).parents[1] / "docs" / "use.md"


def train_run(directory, **changes):
    output = directory / "runs"
    config = write_config(directory, solver={"num_epochs": 1}, **changes)
    assert train.main([str(config), "--output-dir", str(output), "--quiet"]) == 0
    return only_run_dir(output)


def sample_images(count=100):
    return np.ascontiguousarray(load_sample()[2][:count].transpose(0, 2, 3, 1))


def run_onnx(path, images):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits", "probabilities"], {"images": images})


@pytest.mark.parametrize("normalization, dtype", [("per_channel", "float32"), ("mean_image", "float64"),
                                                  (None, "float32")])
def test_the_exported_graph_gives_convnets_logits_on_real_images(tmp_path, normalization, dtype):
    run_dir = train_run(tmp_path, model={"layers": EVERY_BLOCK, "dtype": dtype},
                        data={"normalization": normalization})
    trained = convnet.load_model(run_dir)
    assert any(bn.get("running_var") is not None and not np.allclose(bn["running_var"], 1)
               for bn in trained.model.bn_params), "trained running statistics, not the defaults"
    path = tmp_path / "model.onnx"
    assert export.main([str(run_dir), str(path)]) == 0
    images = sample_images()
    logits, probabilities = run_onnx(path, images)
    assert logits.dtype == np.float32 and logits.shape == (100, 10)
    expected = trained.logits(images).astype(np.float32)
    assert np.max(np.abs(logits - expected)) <= 1e-4
    np.testing.assert_allclose(probabilities, trained.predict_proba(images), atol=1e-5)
    assert np.std(expected) > 1e-3, "the logits differ between images, so the comparison means something"


def test_the_graph_has_the_documented_opset_names_and_shapes(tmp_path, capsys):
    run_dir = train_run(tmp_path)
    path = tmp_path / "model.onnx"
    assert export.main([str(run_dir / "best.npz"), str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "opset 17" in out and re.search(r"check: max \|logits difference\| \S+ on 100 sample images", out)
    model = onnx.load(str(path))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", onnx_export.OPSET)]
    (image_input,) = model.graph.input
    assert image_input.name == "images" and image_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image_input.type.tensor_type.shape.dim] == ["N", 32, 32, 3]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities"]
    names = {p.key: p.value for p in model.metadata_props}["class_names"]
    assert json.loads(names) == list(convnet.data.CLASS_NAMES)
    assert {n.op_type for n in model.graph.node} >= {"Cast", "Transpose", "Sub", "Div", "BatchNormalization"}
    docs = " ".join(DOCS.read_text().split())
    assert f"opset {onnx_export.OPSET}" in docs
    assert "input `images`, uint8 (N, H, W, 3)" in docs
    assert "outputs `logits` and `probabilities`, float32 (N, num_classes)" in docs


class Whitening(blocks.Block):
    """A block convnet has no ONNX form for."""


def test_a_block_without_an_onnx_form_is_named(tmp_path, capsys, monkeypatch):
    run_dir = train_run(tmp_path)
    trained = convnet.load_model(run_dir)
    trained.model.network.blocks.insert(2, Whitening(trained.model.network.blocks[1].out_shape))
    with pytest.raises(onnx_export.ExportError, match=r"block 2 \(Whitening\) cannot be exported to ONNX"):
        onnx_export.to_onnx(trained)
    monkeypatch.delitem(onnx_export.EXPORTERS, blocks.GlobalAvgPool)
    assert export.main([str(run_dir), str(tmp_path / "model.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(GlobalAvgPool) cannot be exported to ONNX" in err
    assert not (tmp_path / "model.onnx").exists()


def test_only_convnets_export(tmp_path, capsys):
    config = write_config(tmp_path, solver={"num_epochs": 1})
    settings = yaml.safe_load(config.read_text())
    settings["model"] = {"type": "ThreeLayerConvNet", "num_filters": 4, "filter_size": 3, "hidden_dim": 8}
    config.write_text(yaml.safe_dump(settings))
    assert train.main([str(config), "--output-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    assert export.main([str(run_dir), str(tmp_path / "model.onnx")]) == 1
    assert "only ConvNet models export to ONNX; this checkpoint holds a ThreeLayerConvNet" in capsys.readouterr().err


def test_without_onnx_the_export_says_which_extra_to_install(tmp_path, capsys, monkeypatch):
    run_dir = train_run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert export.main([str(run_dir), str(tmp_path / "model.onnx")]) == 2
    assert "pip install 'convnet[onnx]'" in capsys.readouterr().err


def test_check_without_onnxruntime_is_one_line_and_keeps_the_file(tmp_path, capsys, monkeypatch):
    run_dir = train_run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert export.main([str(run_dir), str(tmp_path / "model.onnx"), "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime" in err and "convnet[onnx]" in err
    assert (tmp_path / "model.onnx").is_file()


def test_export_help_documents_the_graph_and_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        export.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f'opset {onnx_export.OPSET}; input "{onnx_export.INPUT_NAME}", uint8 (N, H, W, 3)' in text and "exit status: 0 written; 1" in text


# The blocks of the fast recipe: patch whitening, conv -> pool -> bn -> act with both activations,
# a frozen batch-norm scale, floor-mode pooling (15 -> 7 -> 3), a 3x3 pool to 1x1, a GELU stage,
# and a head without a bias and with a fixed scale.
RECIPE_BLOCKS = [
    {"type": "whiten", "size": 2, "images": 50, "bias_epochs": 1},
    {"type": "conv_pool_bn_act", "filters": 8, "activation": "gelu", "scale": False, "floor": True},
    {"type": "conv_pool_bn_act", "filters": 8, "floor": True, "init": "dirac"},
    {"type": "conv_bn_act", "filters": 6, "activation": "gelu", "momentum": 0.6, "eps": 1e-3},
    {"type": "pool", "floor": True}, {"type": "pool", "size": 3}, "gelu", "global_avgpool",
]


def test_the_recipe_blocks_export_and_give_convnets_logits(rng):
    from convnet.checkpoint import Inference
    from convnet.inference import TrainedModel

    model = ConvNet(RECIPE_BLOCKS, input_dim=(3, 32, 32), num_classes=10, head_bias=False, head_scale=0.5, seed=0)
    raw = sample_images(100)
    normalization = {"normalization": "per_channel", "mean": raw.mean(axis=(0, 1, 2)).reshape(3, 1, 1),
                     "std": raw.std(axis=(0, 1, 2)).reshape(3, 1, 1)}
    X = ((raw.transpose(0, 3, 1, 2) - normalization["mean"]) / normalization["std"]).astype(np.float32)
    model.initialize_from_data(X)
    for name, value in model.params.items():  # trained-looking parameters, not the initial ones
        if name not in model.frozen:
            value += 0.1 * rng.standard_normal(value.shape).astype(value.dtype)
    for start in range(0, 100, 25):  # batch statistics away from convnet's defaults
        model.loss(X[start : start + 25], rng.integers(10, size=25))
    trained = TrainedModel(model, Inference({}, normalization, [str(i) for i in range(10)], (3, 32, 32)))
    graph = onnx_export.to_onnx(trained)
    ops = {node.op_type for node in graph.graph.node}
    assert {"Erf", "MaxPool", "Conv", "Gemm", "BatchNormalization"} <= ops and "Gelu" not in ops
    (gemm,) = [node for node in graph.graph.node if node.op_type == "Gemm"]
    assert len(gemm.input) == 2 and {a.name: a.f for a in gemm.attribute} == {"alpha": 0.5, "beta": 0.5}
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, _ = session.run(["logits", "probabilities"], {"images": raw})
    expected = trained.logits(raw).astype(np.float32)
    assert np.std(expected) > 1e-3
    assert np.max(np.abs(logits - expected)) <= 1e-4 * max(1.0, np.max(np.abs(expected)))
