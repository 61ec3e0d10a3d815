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
from convnet.models import blocks  # noqa: E402

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
