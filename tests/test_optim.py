"""Update rules and learning-rate schedules against values worked out by hand."""

import math

import numpy as np
import pytest

from convnet import optim
from convnet.schedules import make_schedule
from convnet.solver import Solver

W0 = np.array([1.0, -2.0])
DW1 = np.array([0.5, 1.0])
DW2 = np.array([-1.0, 2.0])


def two_steps(rule, config):
    w = W0.copy()
    w1, config = rule(w, DW1, config)
    first = w1.copy()
    w2, config = rule(w1, DW2, config)
    assert w2 is w, "the update must happen in place"
    return first, w2.copy(), config


def test_sgd():
    first, second, _ = two_steps(optim.sgd, {"learning_rate": 0.1})
    np.testing.assert_allclose(first, [1.0 - 0.05, -2.0 - 0.1])
    np.testing.assert_allclose(second, [0.95 + 0.1, -2.1 - 0.2])


def test_sgd_momentum():
    first, second, config = two_steps(optim.sgd_momentum, {"learning_rate": 0.1, "momentum": 0.9})
    # v1 = -0.1 * dw1 = [-0.05, -0.1]; w1 = [0.95, -2.1]
    np.testing.assert_allclose(first, [0.95, -2.1])
    # v2 = 0.9 * v1 - 0.1 * dw2 = [-0.045 + 0.1, -0.09 - 0.2] = [0.055, -0.29]
    np.testing.assert_allclose(config["velocity"], [0.055, -0.29])
    np.testing.assert_allclose(second, [0.95 + 0.055, -2.1 - 0.29])


def test_nesterov():
    first, second, config = two_steps(optim.nesterov, {"learning_rate": 0.1, "momentum": 0.9})
    # step 1: v = [-0.05, -0.1]; w += 1.9 * v
    np.testing.assert_allclose(first, [1.0 - 0.095, -2.0 - 0.19])
    # step 2: v_old = [-0.05, -0.1]; v = [0.055, -0.29]; w += 1.9 * v - 0.9 * v_old
    np.testing.assert_allclose(second, [0.905 + 0.1045 + 0.045, -2.19 - 0.551 + 0.09])


def test_rmsprop():
    first, _, config = two_steps(optim.rmsprop, {"learning_rate": 0.01, "decay_rate": 0.99, "epsilon": 0.0})
    # cache = 0.01 * dw^2, so the first step is lr * dw / (0.1 |dw|) = 0.1 * sign(dw)
    np.testing.assert_allclose(first, [0.9, -2.1])
    # cache after two steps: 0.99 * 0.01 * dw1^2 + 0.01 * dw2^2
    np.testing.assert_allclose(config["cache"], [0.99 * 0.0025 + 0.01, 0.99 * 0.01 + 0.04])


def test_adam_first_steps():
    first, second, config = two_steps(optim.adam, {"learning_rate": 0.1, "epsilon": 0.0})
    # t=1: m_hat = dw, v_hat = dw^2, step = lr * sign(dw)
    np.testing.assert_allclose(first, [0.9, -2.1])
    # t=2: m = 0.9 * 0.1 * dw1 + 0.1 * dw2; v = 0.999 * 0.001 * dw1^2 + 0.001 * dw2^2
    m = 0.09 * DW1 + 0.1 * DW2
    v = 0.000999 * DW1**2 + 0.001 * DW2**2
    step = 0.1 * (m / (1 - 0.9**2)) / np.sqrt(v / (1 - 0.999**2))
    np.testing.assert_allclose(second, first - step)
    assert config["t"] == 2


def test_adamw_decays_weights_decoupled_from_the_gradient():
    first, _, _ = two_steps(optim.adamw, {"learning_rate": 0.1, "epsilon": 0.0, "weight_decay": 0.5})
    # adam's step (lr * sign(dw)) plus lr * weight_decay * w
    np.testing.assert_allclose(first, [1.0 - 0.1 - 0.05, -2.0 - 0.1 + 0.1])


def test_rules_keep_float32():
    for rule in optim.UPDATE_RULES.values():
        w = np.ones(3, np.float32)
        next_w, _ = rule(w, np.full(3, 0.5, np.float32), {})
        assert next_w.dtype == np.float32


def test_rules_fill_in_their_declared_defaults():
    """A hyperparameter left out of config takes the default declared in RULES (what the docs table shows)."""
    for name, rule in optim.RULES.items():
        _, config = rule.update(np.ones(2), np.ones(2), None)
        assert {key: config[key] for key in rule.options} == {key: o.default for key, o in rule.options.items()}
    assert optim.RULES["adam"].default_learning_rate == 1e-3 and optim.RULES["sgd"].default_learning_rate == 1e-2


def test_the_solver_and_validation_read_the_rules_registry(monkeypatch):
    """A rule added to RULES is one entry: config validation accepts it and the Solver uses it, with its default rate."""
    from convnet.config import validate_config

    calls = []
    monkeypatch.setattr(optim, "RULES", dict(optim.RULES))

    @optim.update_rule("test rule", learning_rate=optim.Option(0.5, float), shrink=optim.Option(0.25, float))
    def halve(w, dw, config):
        calls.append(config["shrink"])
        return w * config["shrink"], config

    config = validate_config({"name": "x", "model": {"type": "TwoLayerNet"}, "optim": {"rule": "halve", "shrink": 0.5}})
    assert config["optim"] == {"rule": "halve", "shrink": 0.5}

    class Model:
        params = {"w": np.ones(2)}

        def loss(self, X, y=None):
            return 0.0, {"w": np.zeros(2)}

    solver = Solver(Model(), {"X_train": np.zeros((2, 1)), "y_train": np.zeros(2, int)}, update_rule="halve",
                    num_epochs=1, batch_size=2, verbose=False, num_train_samples=None)
    assert solver.base_lr == 0.5
    solver.step()
    assert calls == [0.25]


@pytest.mark.parametrize(
    "spec, epochs_and_rates",
    [
        (None, [(0, 0.1), (7.5, 0.1)]),
        ({"type": "exponential", "decay": 0.5}, [(0, 0.1), (0.99, 0.1), (1, 0.05), (2.5, 0.025)]),
        ({"type": "step", "step_size": 3, "gamma": 0.1}, [(2.9, 0.1), (3, 0.01), (6.1, 0.001)]),
        ({"type": "step", "milestones": [2, 5], "gamma": 0.5}, [(1.9, 0.1), (2, 0.05), (5, 0.025)]),
        ({"type": "cosine", "warmup_epochs": 2}, [(0, 0.0), (1, 0.05), (2, 0.1), (6, 0.05), (10, 0.0)]),
        ({"type": "cosine", "min_lr": 0.01}, [(0, 0.1), (5, 0.055), (10, 0.01)]),
        ({"type": "onecycle", "peak_epoch": 4}, [(0, 0.01), (2, 0.055), (4, 0.1), (7, 0.1 - 0.5 * 0.0999), (10, 1e-4)]),
    ],
    ids=["constant", "exponential", "step", "milestones", "cosine-warmup", "cosine-min", "onecycle"],
)
def test_schedules_by_hand(spec, epochs_and_rates):
    schedule = make_schedule(spec, base_lr=0.1, num_epochs=10)
    for epoch, rate in epochs_and_rates:
        assert math.isclose(schedule(epoch), rate, rel_tol=1e-9, abs_tol=1e-12), (epoch, schedule(epoch), rate)


@pytest.mark.parametrize(
    "spec, message",
    [("linear", r"'schedule.type' must be one of"), ({"type": "cosine", "warmup": 1}, r"'schedule.warmup' for cosine: unknown")],
)
def test_bad_schedules_are_rejected(spec, message):
    with pytest.raises(ValueError, match=message):
        make_schedule(spec, 0.1, 10)
