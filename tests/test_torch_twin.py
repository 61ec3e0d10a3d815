"""The benchmarks' PyTorch twin of a config (benchmarks/torch_twin.py, bench_recipe.py).

The structure tests need no torch; the ones that run the twin skip without it.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from convnet.models import ConvNet
from convnet.models.conv_net import DEFAULT_LAYERS
from convnet.solver import Solver
from test_blocks import EVERY_TYPE

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
import bench_recipe  # noqa: E402  (benchmarks/ is not a package)
import torch_twin  # noqa: E402


@pytest.mark.parametrize("layers, input_dim", [(EVERY_TYPE, (3, 8, 8)), (None, (3, 16, 16))])
def test_the_config_twin_is_the_twin_of_the_network_convnet_builds(layers, input_dim):
    """Built from the block list alone, the twin has the layers and parameter names of convnet's model."""
    model = ConvNet(layers, input_dim=input_dim, num_classes=3, seed=0)
    twin = torch_twin.ConfigTwin(DEFAULT_LAYERS if layers is None else layers, input_dim, num_classes=3)
    assert twin.layers == torch_twin.twin_layers(model.network, model.params)
    assert [name for name, *_ in twin.params] == list(model.params)


def test_forward_flops_count_the_convolutions_and_the_head():
    model = ConvNet([{"type": "conv", "filters": 4, "size": 3}, "pool", {"type": "conv_bn_relu", "filters": 8, "size": 1}],
                    input_dim=(3, 8, 8), num_classes=3, seed=0)
    convolutions = 2 * 4 * 3 * 9 * 8 * 8 + 2 * 8 * 4 * 1 * 4 * 4
    assert torch_twin.forward_flops(model, affine=False) == convolutions
    assert torch_twin.forward_flops(model) == convolutions + 2 * 8 * 4 * 4 * 3


def test_an_unknown_block_or_option_is_refused():
    with pytest.raises(ValueError, match="does not know block 'conv' option"):
        torch_twin.ConfigTwin([{"type": "conv", "filters": 4, "colour": 1}])
    with pytest.raises(ValueError, match="does not know block 'spiral'"):
        torch_twin.ConfigTwin([{"type": "spiral"}])


def test_parameter_groups_pick_the_first_matching_glob_and_refuse_a_glob_matching_nothing():
    names, ndims = ["conv1.W", "bn1.gamma", "bn1.beta", "fc_out.W", "fc_out.b"], [4, 1, 1, 2, 1]
    raw = {"model": {"reg": 0.5}, "optim": {"groups": [{"params": "*.beta", "lr_multiplier": 64.0, "weight_decay": 0.1},
                                                        {"params": ["bn*", "fc_out.b"], "frozen": True}]}}
    settings = bench_recipe.parameter_settings(names, ndims, raw)
    assert settings == {"conv1.W": (1.0, 0.5, None), "bn1.gamma": (1.0, 0.0, 0), "bn1.beta": (64.0, 0.1, None),
                        "fc_out.W": (1.0, 0.5, None), "fc_out.b": (1.0, 0.0, 0)}
    raw["optim"]["groups"].append({"params": "whiten*"})
    with pytest.raises(SystemExit, match="'whiten\\*', which matches no parameter"):
        bench_recipe.parameter_settings(names, ndims, raw)


def tiny_data(n=50, side=4):
    rng = np.random.default_rng(0)
    return {"X_train": rng.standard_normal((n, 3, side, side)), "y_train": rng.integers(3, size=n)}


TINY_LAYERS = [{"type": "whiten", "size": 1, "images": 8, "bias_epochs": 3}, {"type": "conv_bn_relu", "filters": 4},
               "global_avgpool"]


def tiny_convnet(layers=TINY_LAYERS[1:]):
    return ConvNet(layers, input_dim=(3, 4, 4), num_classes=3, seed=0, dtype=np.float64)


@pytest.mark.parametrize("num_epochs, batch_size, expected", [
    (1.1, 1, (50, 55, 2)), (1, 1, (50, 50, 1)), (0.5, 1, (50, 25, 1)), (2.98, 1, (50, 149, 3)),
    (9.9, 1, (50, 495, 10)), (0.001, 1, (50, 1, 1)), (1.1, 8, (7, 8, 2)), (3, 8, (7, 21, 3))])
def test_the_twin_makes_as_many_updates_in_as_many_epochs_as_the_solver(num_epochs, batch_size, expected):
    """1.1 epochs of 50 steps is 55 updates on both sides (a plain ceil of the float product gives 56)."""
    solver = Solver(tiny_convnet(), tiny_data(), batch_size=batch_size, num_epochs=num_epochs, verbose=False)
    twin = bench_recipe.training_length(50, {"batch_size": batch_size, "num_epochs": num_epochs})
    assert twin == (solver.iterations_per_epoch, solver.total_iterations, solver.epoch_count) == expected


@pytest.mark.parametrize("group_epoch, expected", [(5, 3), (1, 1)])
def test_the_twin_freezes_what_the_solver_freezes_a_block_and_a_group_merged_by_the_earlier_epoch(group_epoch,
                                                                                                  expected):
    """The whitening bias has bias_epochs 3 and a group freezes it from ``group_epoch``: both sides freeze it
    from the earlier of the two; a group's freeze of another parameter and the filter's own 0 are kept."""
    groups = [{"params": "whiten1.b", "freeze_after_epoch": group_epoch},
              {"params": "conv1.W", "freeze_after_epoch": 2}]
    model = tiny_convnet(TINY_LAYERS)
    solver = Solver(model, tiny_data(), num_epochs=6, groups=groups, verbose=False)
    twin = torch_twin.ConfigTwin(TINY_LAYERS, (3, 4, 4), num_classes=3)
    settings = bench_recipe.parameter_settings(list(model.params), [p.ndim for p in model.params.values()],
                                               {"optim": {"groups": groups}})
    plan = bench_recipe.freeze_plan(twin, settings)
    assert plan == solver.freeze_after == {"whiten1.W": 0, "whiten1.b": expected, "conv1.W": 2}


@pytest.mark.parametrize("schedule", [None, {"type": "piecewise_linear", "points": [[0.0, 0.2], [0.3, 1.0], [1.0, 0.1]]},
                                      {"type": "cosine"}])
def test_the_twins_learning_rate_at_each_update_is_the_solvers(schedule):
    """1.1 epochs of 50 updates, the second epoch partial: at each update's progress (epoch + batch / 50) the
    twin's multiplier times the base rate is the learning rate the Solver used."""
    solver = Solver(tiny_convnet(), tiny_data(), batch_size=1, num_epochs=1.1, optim_config={"learning_rate": 0.01},
                    schedule=schedule, verbose=False, seed=0)
    solver.train()
    config = {"batch_size": 1, "num_epochs": 1.1}
    multiplier = bench_recipe.schedule_function({"schedule": schedule}, config)
    per_epoch, total, epochs = bench_recipe.training_length(50, config)
    twin = [0.01 * multiplier(epoch + b / per_epoch) for epoch in range(epochs)
            for b in range(min(per_epoch, total - epoch * per_epoch))]
    assert len(twin) == len(solver.lr_history) == 55
    assert twin == pytest.approx(solver.lr_history, rel=1e-12)
    assert schedule is None or len(set(twin)) > 2  # a schedule that moves, so that the positions matter


def test_whitening_filters_decorrelate_the_patches():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((3, 3))
    X = torch.from_numpy(np.einsum("dc,nchw->ndhw", mixing, rng.standard_normal((64, 3, 8, 8)))).float()
    twin = torch_twin.ConfigTwin([{"type": "whiten", "size": 2, "eps": 1e-6, "images": 64}], (3, 8, 8), 2)
    net, params = twin.build(seed=0)
    twin.initialize_from_data(net, X)
    assert params["whiten1.W"].shape == (24, 3, 2, 2) and twin.freeze_after == {"whiten1.W": 0}
    with torch.no_grad():
        out = net[0](X)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    assert torch.allclose(out.T @ out / len(out), torch.eye(12, dtype=torch.float64), atol=1e-3)
    assert torch.equal(params["whiten1.W"][12:], -params["whiten1.W"][:12])


def test_alternating_flip_mirrors_every_image_in_every_other_epoch():
    torch = pytest.importorskip("torch")
    X = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    options = {**bench_recipe.SCHEMA_DEFAULTS["augment"], "flip": "alternating"}
    augment = bench_recipe.Augment(options, 2, torch.Generator().manual_seed(0))
    indices = torch.tensor([0, 1])
    first, second, third = (augment(X, indices, epoch) for epoch in range(3))
    assert torch.equal(second, first.flip(-1)) and torch.equal(third, first)


def test_reflect_translation_keeps_the_pixels_of_the_image():
    torch = pytest.importorskip("torch")
    X = torch.rand(5, 2, 6, 6)
    out = bench_recipe.translate(X, 2, "reflect", torch.Generator().manual_seed(1))
    assert out.shape == X.shape
    for image, shifted in zip(X, out):  # every output pixel is one of the image's own (no zeros)
        assert torch.isin(shifted, image).all()


def test_lookahead_moves_the_state_to_the_average():
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    lookahead = bench_recipe.Lookahead(net, every=1, decay=0.5, power=0)
    with torch.no_grad():
        net.weight.fill_(3.0)
    lookahead.step(1, 10)  # d = 0.5: avg = 1 + 0.5 * (3 - 1)
    assert torch.equal(net.weight, torch.full((1, 2), 2.0))


def test_the_torch_optimizer_takes_convnets_steps_with_a_group_multiplier_and_coupled_decay():
    torch = pytest.importorskip("torch")
    from convnet.optim import nesterov

    w0, gradient = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    param = torch.nn.Parameter(torch.tensor(w0))
    raw = {"optim": {"rule": "nesterov", "learning_rate": 0.5, "momentum": 0.85}}
    optimizer, base_lr = bench_recipe.make_optimizer({"bn1.beta": param}, {"bn1.beta": (2.0, 0.1, None)}, raw)
    w, config = w0.copy(), {"learning_rate": base_lr * 2.0, "momentum": 0.85}
    for _ in range(3):
        param.grad = torch.tensor(gradient)
        for group in optimizer.param_groups:
            group["lr"] = base_lr * group["lr_multiplier"]
        optimizer.step()
        w, config = nesterov(w, gradient + 0.1 * w, config)
    assert np.allclose(param.detach().numpy(), w, rtol=1e-12)
