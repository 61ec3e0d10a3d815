"""Issue 11's training options in configs and on the command line: refused before any data loads
(one line naming the key), and a run that uses them all trains, resumes exactly and evaluates."""

import json

import numpy as np
import pytest

from convnet import evaluate, experiment, train
from convnet.checkpoint import load_arrays, load_arrays_and_meta
from convnet.config import load_config, validate_config

from runs import only_run_dir, write_config
from test_config_validation import assert_refused, merged, no_data, write_config as write_raw  # noqa: F401
from test_training_features import interrupt_at

CONV = {"type": "ConvNet", "layers": [{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"]}

REFUSED = [
    (merged(optim={"rule": "adam", "groups": [{"params": "conv9.*"}]}),
     "'optim.groups[0].params' is 'conv9.*', which matches no parameter of the model (its parameters: conv1.W"),
    (merged(optim={"groups": [{"params": "*.beta", "lr_multiplier": "fast"}]}),
     "'optim.groups[0].lr_multiplier' must be a number >= 0, got 'fast'"),
    (merged(optim={"groups": [{"params": "conv1.W", "freeze_after_epoch": 1}]}),
     "'optim.groups': parameter 'conv1.W' would be frozen from epoch 1, but the run has only 1 epochs"),
    (merged(optim={"groups": {"params": "*"}}), "'optim.groups' must be a list or null"),
    (merged(optim={"rule": "sgd", "group": []}), "'optim.group' for sgd: unknown; did you mean 'groups'?"),
    (merged(solver={"num_epochs": -0.5}), "'solver.num_epochs' must be > 0, got -0.5"),
    (merged(solver={"result": "last"}), "'solver.result' must be one of ['best', 'final'], got 'last'"),
    (merged(solver={"lookahead": {"every": 0}}), "'solver.lookahead.every' must be >= 1, got 0"),
    (merged(solver={"lookahead": {"decay": 0.9, "powr": 3}}), "'solver.lookahead.powr': unknown; did you mean 'power'?"),
    (merged(solver={"tta": "flip_transl"}), "'solver.tta' must be one of [null, 'flip', 'flip_translate'], got "
                                           "'flip_transl'; did you mean 'flip_translate'?"),
    (merged(model={"type": "TwoLayerNet"}, solver={"tta": "flip"}),
     "'solver.tta' is 'flip', but model.type 'TwoLayerNet' takes flat vectors, not images"),
    (merged(schedule={"type": "piecewise_linear", "points": [[0, 1], [0.5, 2], [0.2, 1]]}),
     "'schedule.points' must have increasing x"),
    (merged(data={"augment": {"flip": "alternate"}}),
     "'data.augment.flip' must be one of [true, false, 'alternating'], got 'alternate'; did you mean 'alternating'?"),
    (merged(data={"augment": {"crop_padding": 2, "pad_mode": "mirror"}}),
     "'data.augment.pad_mode' must be one of ['zeros', 'reflect'], got 'mirror'"),
    (merged(data={"augment": {"crop_padding": 32, "pad_mode": "reflect"}}),
     "'data.augment.crop_padding' is 32, but pad_mode 'reflect' needs less than the image side (32)"),
]


@pytest.mark.parametrize("raw, expected", REFUSED)
def test_bad_training_options_are_refused_before_data_loads(raw, expected, tmp_path, capsys, no_data):  # noqa: F811
    assert_refused(capsys, [str(write_raw(tmp_path, raw))], expected)


def test_the_options_resolve_with_their_defaults():
    config = validate_config(merged(solver={"num_epochs": 2.5, "lookahead": {}, "result": "final"},
                                    optim={"rule": "sgd_momentum", "groups": [{"params": "*.b"}]},
                                    data={"num_validation": 0, "augment": {"flip": "alternating"}}))
    assert config["solver"]["lookahead"] == {"every": 5, "decay": 0.95, "power": 3.0}
    assert config["solver"]["num_epochs"] == 2.5 and config["solver"]["tta"] is None
    assert config["optim"]["groups"] == [{"params": ["*.b"], "lr_multiplier": 1.0, "weight_decay": None,
                                          "frozen": False, "freeze_after_epoch": None}]
    assert config["data"]["augment"]["pad_mode"] == "zeros"


EVERYTHING = dict(
    data={"num_validation": 0, "augment": {"flip": "alternating", "crop_padding": 2, "pad_mode": "reflect"}},
    optim={"rule": "sgd_momentum", "learning_rate": 0.05,
           "groups": [{"params": "bn*", "lr_multiplier": 4.0, "weight_decay": 0.0},
                      {"params": "conv1.W", "frozen": True}]},
    schedule={"type": "piecewise_linear", "points": [[0, 0.2], [0.25, 1], [1, 0.1]]},
    solver={"num_epochs": 2.5, "result": "final", "lookahead": {"every": 2}, "tta": "flip_translate"},
)


def test_a_run_with_every_training_option_resumes_exactly_and_evaluates_with_its_tta(tmp_path, capsys):
    config = str(write_config(tmp_path, **EVERYTHING))
    straight_out, split_out = tmp_path / "straight", tmp_path / "split"
    assert train.main([config, "--output-dir", str(straight_out), "--quiet"]) == 0
    # stopped by Ctrl-C mid-epoch (the lookahead and the schedule depend on the whole run's length)
    stopped, run_dir = experiment.run(load_config(config, [f"output.dir={split_out}"]), verbose=False,
                                      say=lambda *_: None, callbacks=[interrupt_at(7)])
    assert stopped["status"] == "interrupted"
    assert train.main(["--resume", str(run_dir), "--quiet"]) == 0
    straight_dir = only_run_dir(straight_out)
    straight, resumed = load_arrays(straight_dir / "checkpoint.npz"), load_arrays(run_dir / "checkpoint.npz")
    assert sorted(straight) == sorted(resumed) and "lookahead/param/conv1.W" in straight
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    summary = json.loads((straight_dir / "summary.json").read_text())
    assert (summary["epochs"], summary["iterations"]) == (3, 10)  # 160 images in batches of 32: ceil(2.5 * 5)
    assert summary["data"]["val"] == 0 and summary["best_selected_by"] == "final"
    assert summary["images_per_second"] is not None
    _, meta = load_arrays_and_meta(straight_dir / "best.npz")
    assert meta["epoch"] == 3 and meta["selected_by"] == "final"
    capsys.readouterr()
    assert evaluate.main([str(straight_dir), "--no-plot"]) == 0  # the run's tta by default
    report = json.loads((straight_dir / "evaluation_test.json").read_text())
    assert report["tta"] == "flip_translate" and report["accuracy"] == pytest.approx(summary["test_acc"])
    assert evaluate.main([str(straight_dir), "--no-plot", "--tta", "none"]) == 0
    assert json.loads((straight_dir / "evaluation_test.json").read_text())["tta"] is None
    assert evaluate.main([str(straight_dir), "--no-plot", "--split", "val"]) == 1
    assert "the val split of this run's data is empty" in capsys.readouterr().err


def test_evaluate_refuses_tta_for_a_model_of_flat_vectors(tmp_path, capsys):
    config = write_raw(tmp_path, merged(model={"type": "TwoLayerNet", "hidden_dim": 8},
                                        data={"num_training": 50, "num_validation": 10, "num_test": 20}))
    output = tmp_path / "runs"
    assert train.main([str(config), "--output-dir", str(output), "--quiet"]) == 0
    capsys.readouterr()
    (run_dir,) = list((output / "t").iterdir())
    assert evaluate.main([str(run_dir), "--no-plot", "--tta", "flip"]) == 1
    err = capsys.readouterr().err
    assert "--tta flip needs a model of images; this TwoLayerNet takes flat vectors" in err and err.count("\n") == 1
