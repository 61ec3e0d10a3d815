"""The fast recipe's model options (blocks, head, label smoothing) are refused by
`python -m convnet.train` before any data is loaded, with one line naming the key."""

import pytest
from test_config_validation import assert_refused, merged, no_data, write_config  # noqa: F401  (a fixture)

from convnet.config import validate_config


def convnet(*layers, **options):
    return {"type": "ConvNet", "layers": list(layers), **options}


WHITEN = {"type": "whiten", "size": 2}
REFUSED = [
    (merged(model=convnet(WHITEN, {"type": "conv_pool_bn_act", "filters": 4})),
     "'model.layers[1]' (conv_pool_bn_act) does not fit its input (24, 31, 31): pool window height 2 with stride 2 "
     "does not tile"),
    (merged(model=convnet({"type": "whiten", "size": 33})),
     "'model.layers[0]' (whiten) does not fit its input (3, 32, 32): filter height 33 is larger than"),
    (merged(model=convnet({**WHITEN, "bias_epochs": 2}, "global_avgpool")),
     "config key 'model.layers[0].bias_epochs' is 2, beyond the run's solver.num_epochs 1: it would never be frozen"),
    (merged(model=convnet({**WHITEN, "images": 0})), "'model.layers[0].images' must be >= 1, got 0"),
    (merged(model=convnet({"type": "conv_bn_act", "filters": 4, "activation": "swish"})),
     "'model.layers[0].activation' must be one of ['relu', 'gelu'], got 'swish'"),
    (merged(model=convnet({"type": "conv_bn_act", "filters": 4, "init": "kaiming"})),
     "'model.layers[0].init' must be one of ['he', 'uniform', 'dirac'], got 'kaiming'"),
    (merged(model=convnet({"type": "pool", "floor": "yes"})), "'model.layers[0].floor' must be true/false, got 'yes'"),
    (merged(model=convnet("global_avgpool", head_scale=0)), "'model.head_scale' must be > 0, got 0"),
    (merged(model=convnet("global_avgpool", head_init="he")), "'model.head_init' must be one of ['small', 'uniform']"),
    (merged(model=convnet("global_avgpool", label_smoothing=1)), "'model.label_smoothing' must be in [0, 1), got 1"),
]


@pytest.mark.parametrize("case, expected", REFUSED, ids=[expected for _, expected in REFUSED])
def test_train_refuses_bad_recipe_options_before_loading_data(tmp_path, capsys, no_data, case, expected):  # noqa: F811
    assert_refused(capsys, [str(write_config(tmp_path, case)), "--output-dir", str(tmp_path / "runs")], expected)


def test_a_freeze_epoch_within_the_run_is_accepted():
    config = validate_config(merged(model=convnet({**WHITEN, "bias_epochs": 1}, "global_avgpool"),
                                    solver={"num_epochs": 1}))
    assert config["model"]["layers"][0]["bias_epochs"] == 1 and config["solver"]["num_epochs"] == 1
