"""The fast recipe's model options (blocks, head, label smoothing): bad values are refused by
`python -m convnet.train` before any data is loaded, with one line naming the key. (A freeze epoch
beyond the run, such as a whitening bias_epochs, is refused by the Solver's parameter plan.)"""

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


def test_the_recipe_options_validate():
    model = convnet({**WHITEN, "bias_epochs": 1}, "gelu",
                    {"type": "conv_pool_bn_act", "filters": 4, "floor": True, "activation": "gelu", "scale": False,
                     "momentum": 0.6, "eps": 1e-3, "init": "dirac"},
                    {"type": "conv_bn_act", "filters": 4, "init": "uniform"}, {"type": "pool", "floor": True},
                    {"type": "pool", "size": 7}, "global_avgpool", head_bias=False, head_scale=0.125, head_init="uniform",
                    label_smoothing=0.2)
    config = validate_config(merged(model=model, solver={"num_epochs": 2}))
    assert config["model"]["layers"][0]["bias_epochs"] == 1 and config["model"]["head_scale"] == 0.125
    assert config["model"]["label_smoothing"] == 0.2 and config["model"]["head_bias"] is False
