"""Issue 11's training features: parameter groups and freezing, data-dependent initialisation,
fractional epochs, result best|final, lookahead, reflect padding, the alternating flip, TTA and
training without a validation split; each resumes bit for bit (mid-epoch and at an epoch end)."""

import os
import signal

import numpy as np
import pytest

from convnet import optim
from convnet.augment import alternating_flip, augment_batch, random_crop
from convnet.checkpoint import CheckpointError, load_arrays_and_meta, save_arrays
from convnet.models import ConvNet
from convnet.models.base import Model, predict_labels, tta_scores
from convnet.options import ConfigError
from convnet.schedules import make_schedule
from convnet.solver import Solver
from runs import assert_same_state


# ----------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------


def image_data(n=40, side=8, validation=True):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 3, side, side)).astype(np.float32)
    y = rng.integers(3, size=n)
    data = {"X_train": X[:30], "y_train": y[:30]}
    if validation:
        data.update(X_val=X[30:], y_val=y[30:])
    return data


def small_convnet(seed=1):
    return ConvNet([{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"], input_dim=(3, 8, 8),
                   num_classes=3, seed=seed)


class FreezableModel(Model):
    """A linear classifier on flattened images with the model-side contract of frozen parameters and
    data-dependent initialisation: ``freeze_after`` (its 'b' is frozen from epoch 1, as a whitening
    bias would be), ``frozen`` read in the backward pass (no gradient for a frozen parameter), and
    ``initialize_from_data`` (sets 'shift' from the images' mean; counts its calls)."""

    def __init__(self, dims=3 * 8 * 8, classes=3, reg=0.0, seed=0):
        super().__init__(reg=reg, dtype=np.float64, seed=seed)
        self.input_dim = (3, 8, 8)
        self.params = {"W": 0.01 * self.rng.standard_normal((dims, classes)), "b": np.zeros(classes),
                       "shift": np.zeros(1)}
        self.freeze_after = {"b": 1}
        self.frozen = set()
        self.initialized_with = []
        self.gradients_asked = []

    def initialize_from_data(self, X):
        self.initialized_with.append(len(X))
        self.params["shift"] = np.array([float(np.mean(X))])

    def loss(self, X, y=None):
        X2 = np.asarray(X, dtype=np.float64).reshape(len(X), -1) - self.params["shift"]
        scores = X2 @ self.params["W"] + self.params["b"]
        if y is None:
            return scores
        loss, dscores = self.data_loss(scores, y)
        grads = {"W": X2.T @ dscores, "b": dscores.sum(axis=0), "shift": np.zeros(1)}
        grads = {name: grad for name, grad in grads.items() if name not in self.frozen}
        self.gradients_asked.append(sorted(grads))
        return loss, self.add_regularization_gradients(grads)


def interrupt_at(iteration):
    def interrupt(event, solver, info):
        if event == "iteration" and info["iteration"] == iteration:
            os.kill(os.getpid(), signal.SIGINT)

    return interrupt


def assert_resumes_exactly(make, tmp_path, mid_epoch_iteration):
    """make(**solver arguments) -> Solver. An interrupted run (mid-epoch, and after the first epoch)
    resumed from its checkpoint ends in the state of the run that was never stopped."""
    straight = make().train()
    stopped = make(checkpoint_dir=tmp_path / "mid", callbacks=[interrupt_at(mid_epoch_iteration)]).train()
    assert stopped.interrupted and stopped.batch_in_epoch != 0
    make(checkpoint_dir=tmp_path / "end").train(epochs=1)
    for where in ("mid", "end"):
        resumed = make(checkpoint_dir=tmp_path / where).load_checkpoint(tmp_path / where / "checkpoint.npz").train()
        assert_same_state(resumed, straight)
        for name, value in straight.model.params.items():
            np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=f"{where}: {name}")
    return straight


# ----------------------------------------------------------------------
# parameter groups
# ----------------------------------------------------------------------


def test_the_first_matching_group_decides_and_unmatched_parameters_keep_the_defaults():
    groups = optim.resolve_groups([{"params": "*.b", "lr_multiplier": 64.0, "weight_decay": 0.0},
                                   {"params": ["fc.*", "conv1.W"], "frozen": True},
                                   {"params": "conv*", "freeze_after_epoch": 2}])
    plans = optim.plan_parameters(groups, ["conv1.W", "conv1.b", "conv2.W", "fc.W", "fc.b", "other"])
    assert plans["conv1.b"] == optim.ParameterPlan(64.0, 0.0, None)  # first group, though conv* matches too
    assert plans["fc.b"] == optim.ParameterPlan(64.0, 0.0, None)
    assert plans["fc.W"] == plans["conv1.W"] == optim.ParameterPlan(1.0, None, 0)
    assert plans["conv2.W"] == optim.ParameterPlan(1.0, None, 2)
    assert plans["other"] == optim.DEFAULT_PLAN


@pytest.mark.parametrize("groups, message", [
    ([{"params": "conv9.*"}], r"'optim.groups\[0\].params' is 'conv9.\*', which matches no parameter"),
    ([{"params": ["b", "bn*"]}], r"'optim.groups\[0\].params\[1\]' is 'bn\*', which matches no parameter"),
    ([{"lr_multiplier": 2.0}], r"'optim.groups\[0\].params' is required"),
    ([{"params": "*", "lr_multiplier": -1}], r"'optim.groups\[0\].lr_multiplier' must be >= 0"),
    ([{"params": "*", "frozen": "yes"}], r"'optim.groups\[0\].frozen' must be true/false"),
    ([{"params": "*", "lr": 2}], r"'optim.groups\[0\].lr': unknown"),
    ({"params": "*"}, r"'optim.groups' must be a list or null"),
])
def test_bad_groups_name_the_key(groups, message):
    with pytest.raises(ConfigError, match=message):
        optim.plan_parameters(optim.resolve_groups(groups), ["W", "b"])


class FixedGradientModel(Model):
    """One weight matrix (regularised by model.reg) and one bias whose data gradients are fixed."""

    def __init__(self, reg=0.0):
        super().__init__(reg=reg, dtype=np.float64, seed=0)
        self.params = {"W": self.rng.standard_normal((3, 2)), "b": self.rng.standard_normal(2)}
        self.data_grads = {"W": self.rng.standard_normal((3, 2)), "b": self.rng.standard_normal(2)}

    def loss(self, X, y=None):
        if y is None:
            return np.zeros((len(X), 2))
        grads = {name: grad.copy() for name, grad in self.data_grads.items()}
        return 1.0, self.add_regularization_gradients(grads)


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "nesterov", "rmsprop", "adam"])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_a_groups_weight_decay_and_lr_multiplier_apply_to_every_rule(rule, reg):
    model = FixedGradientModel(reg=reg)
    start = {name: value.copy() for name, value in model.params.items()}
    groups = [{"params": "W", "weight_decay": 0.05, "lr_multiplier": 3.0}, {"params": "b", "weight_decay": 0.2}]
    solver = Solver(model, {"X_train": np.zeros((4, 1)), "y_train": np.zeros(4, dtype=int)}, update_rule=rule,
                    optim_config={"learning_rate": 0.1}, batch_size=4, num_epochs=2, verbose=False, seed=0,
                    groups=groups)
    solver.step()
    solver.step()
    expected = {}
    for name, decay, multiplier in (("W", 0.05, 3.0), ("b", 0.2, 1.0)):
        w, config = start[name].copy(), {"learning_rate": 0.1 * multiplier}
        for _ in range(2):  # the group's decay replaces model.reg: data gradient + decay * w
            w, config = optim.UPDATE_RULES[rule](w, model.data_grads[name] + decay * w, config)
        expected[name] = w
    for name in ("W", "b"):
        np.testing.assert_allclose(model.params[name], expected[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_frozen_and_freeze_after_epoch_stop_updates_from_that_epoch(tmp_path):
    groups = [{"params": "W", "freeze_after_epoch": 2}, {"params": "shift", "frozen": True}]
    model = FreezableModel()
    solver = Solver(model, image_data(), update_rule="adam", batch_size=10, num_epochs=3, verbose=False, seed=0,
                    groups=groups)
    assert model.freeze_after == {"b": 1, "W": 2, "shift": 0}  # the model's own entry kept, the groups' merged
    history = []

    def record(event, solver, info):
        if event == "iteration":
            history.append((solver.epoch, set(model.frozen), {k: v.copy() for k, v in model.params.items()}))

    solver.callbacks.append(record)
    solver.train()
    shift_after_init = model.params["shift"].copy()
    assert [(epoch, frozen) for epoch, frozen, _ in history[::3]] == [(0, {"shift"}), (1, {"shift", "b"}),
                                                                     (2, {"shift", "b", "W"})]
    assert model.gradients_asked[0] == ["W", "b"] and model.gradients_asked[-1] == []
    b_at, W_at = history[2][2]["b"], history[5][2]["W"]  # the last steps of epochs 0 and 1
    assert not np.array_equal(history[0][2]["b"], b_at)
    for epoch, _, params in history:
        np.testing.assert_array_equal(params["shift"], shift_after_init)  # frozen: only initialize_from_data set it
        if epoch >= 1:
            np.testing.assert_array_equal(params["b"], b_at)
        if epoch >= 2:
            np.testing.assert_array_equal(params["W"], W_at)
    assert "m" not in solver.optim_configs["shift"]  # the rule never ran for it: no state


def test_a_solver_skips_the_update_of_a_frozen_parameter_even_when_the_model_computes_its_gradient():
    model = small_convnet()  # its blocks compute every gradient
    before = model.params["conv1.W"].copy()
    solver = Solver(model, image_data(), update_rule="sgd", batch_size=10, num_epochs=1, verbose=False, seed=0,
                    groups=[{"params": "conv1.*", "frozen": True}])
    solver.train()
    np.testing.assert_array_equal(model.params["conv1.W"], before)
    assert model.frozen == {"conv1.W"}


def test_a_freeze_epoch_the_run_never_reaches_is_refused():
    with pytest.raises(ConfigError, match=r"'groups': parameter 'W' would be frozen from epoch 3, but the run has "
                                          r"only 3 epochs"):
        Solver(FreezableModel(), image_data(), num_epochs=3, verbose=False,
               groups=[{"params": "W", "freeze_after_epoch": 3}])
    with pytest.raises(ConfigError, match=r"'model': parameter 'b' would be frozen from epoch 1, but the run has "
                                          r"only 1 epochs"):
        Solver(FreezableModel(), image_data(), num_epochs=1, verbose=False)
    Solver(FreezableModel(), image_data(), num_epochs=1.5, verbose=False)  # epoch 1 is the partial last one


def test_groups_and_freezing_resume_exactly(tmp_path):
    def make(**kwargs):
        return Solver(FreezableModel(), image_data(), update_rule="adam", batch_size=8, num_epochs=3,
                      verbose=False, seed=2, groups=[{"params": "W", "lr_multiplier": 2.0, "freeze_after_epoch": 2,
                                                       "weight_decay": 0.01}], **kwargs)

    straight = assert_resumes_exactly(make, tmp_path, mid_epoch_iteration=6)
    assert straight.model.frozen == {"b", "W"}


# ----------------------------------------------------------------------
# initialize_from_data
# ----------------------------------------------------------------------


def test_initialize_from_data_runs_once_on_a_fresh_run_and_not_on_resume(tmp_path):
    def make(**kwargs):
        return Solver(FreezableModel(), image_data(), batch_size=8, num_epochs=2, verbose=False, seed=0, **kwargs)

    fresh = make(checkpoint_dir=tmp_path)
    fresh.train(epochs=1)
    fresh.train()
    assert fresh.model.initialized_with == [30]
    assert fresh.model.params["shift"][0] == pytest.approx(float(np.mean(image_data()["X_train"])))
    resumed = make(checkpoint_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint.npz").train()
    assert resumed.model.initialized_with == []
    np.testing.assert_array_equal(resumed.model.params["shift"], fresh.model.params["shift"])


# ----------------------------------------------------------------------
# fractional epochs, piecewise_linear, result
# ----------------------------------------------------------------------


def test_fractional_epochs_stop_after_ceil_steps_and_the_partial_epoch_is_evaluated_and_saved(tmp_path):
    solver = Solver(small_convnet(), image_data(), batch_size=8, num_epochs=1.6, verbose=False, seed=0,
                    checkpoint_dir=tmp_path)  # 4 steps per epoch: ceil(1.6 * 4) = 7 steps
    solver.train()
    assert (solver.total_iterations, solver.epoch_count, solver.iteration) == (7, 2, 7)
    assert len(solver.loss_history) == 7 and len(solver.val_acc_history) == 2
    _, meta = load_arrays_and_meta(tmp_path / "checkpoint.npz")
    assert (meta["epoch"], meta["iteration"], meta["batch_in_epoch"]) == (2, 7, 0)


def test_9_9_epochs_of_10_steps_is_99_steps():
    data = {"X_train": np.zeros((100, 1)), "y_train": np.zeros(100, dtype=int)}
    assert Solver(FixedGradientModel(), data, batch_size=10, num_epochs=9.9, verbose=False).total_iterations == 99


def test_fractional_epochs_resume_exactly(tmp_path):
    def make(**kwargs):
        return Solver(small_convnet(), image_data(), update_rule="sgd_momentum", batch_size=8, num_epochs=2.5,
                      verbose=False, seed=4, schedule={"type": "piecewise_linear", "points": [[0, 0.2], [0.3, 1],
                                                                                              [1, 0.1]]}, **kwargs)

    straight = assert_resumes_exactly(make, tmp_path, mid_epoch_iteration=9)
    assert straight.iteration == 10 and straight.epoch == 3


def test_piecewise_linear_follows_the_points_in_fractions_of_training():
    lr = make_schedule({"type": "piecewise_linear", "points": [[0.0, 0.2], [0.25, 1.0], [1.0, 0.0]]}, 0.5, 8)
    assert lr(0) == pytest.approx(0.1)
    assert lr(1) == pytest.approx(0.5 * 0.6)  # halfway to the peak at epoch 2
    assert lr(2) == pytest.approx(0.5)
    assert lr(5) == pytest.approx(0.5 * 0.5)
    assert lr(8) == lr(9) == pytest.approx(0.0)


@pytest.mark.parametrize("points, message", [
    ([[0, 1], [0.5, 2], [0.4, 1]], "must have increasing x"),
    ([[0, 1], [1.5, 1]], r"must have every x \(the fraction of training\) in \[0, 1\]"),
    ([[0, 1]], "must hold at least 2"),
    ([[0, 1, 2], [1, 1]], r"'schedule.points\[0\]' must be a list of 2 numbers"),
    ([[0, -1], [1, 1]], r"'schedule.points\[0\]\[1\]' must be >= 0"),
])
def test_bad_piecewise_linear_points_name_the_key(points, message):
    with pytest.raises(ConfigError, match=message):
        make_schedule({"type": "piecewise_linear", "points": points}, 0.1, 10, label="config key")


class ScriptedModel:
    """Accuracy follows a script by epoch (best at epoch 2 of 3); the gradient of t is -1."""

    ACCURACY = [0.0, 0.25, 0.75, 0.5]

    def __init__(self, steps_per_epoch):
        self.params = {"t": np.zeros(1)}
        self.steps_per_epoch = steps_per_epoch

    def loss(self, X, y=None):
        if y is None:
            epoch = int(round(self.params["t"][0])) // self.steps_per_epoch
            labels = np.where(X[:, 1] < self.ACCURACY[epoch], X[:, 0], X[:, 0] + 1) % 3
            return np.eye(3)[labels.astype(int)]
        return 1.0, {"t": -np.ones(1)}


def scripted(result, tmp_path):
    n = 20
    X = np.stack([np.arange(n) % 3, (np.arange(n) + 0.5) / n], axis=1)
    data = {"X_train": X, "y_train": np.arange(n) % 3, "X_val": X, "y_val": np.arange(n) % 3}
    return Solver(ScriptedModel(4), data, optim_config={"learning_rate": 1.0}, batch_size=5, num_epochs=3,
                  num_train_samples=None, verbose=False, seed=0, checkpoint_dir=tmp_path, result=result)


def test_result_best_ends_with_the_best_epoch_and_final_with_the_last(tmp_path):
    best = scripted("best", tmp_path / "best").train()
    assert best.model.params["t"][0] == 8 and best.best_epoch == 2 and best.best_selected_by == "val_acc"
    final = scripted("final", tmp_path / "final").train()
    assert final.model.params["t"][0] == 12 and final.best_epoch == 3 and final.best_selected_by == "final"
    arrays, meta = load_arrays_and_meta(tmp_path / "final" / "best.npz")
    assert arrays["param/t"][0] == 12 and meta["selected_by"] == "final"


def test_a_checkpoint_of_another_result_setting_is_refused(tmp_path):
    scripted("best", tmp_path).train(epochs=1)
    with pytest.raises(CheckpointError, match="result 'best', but this solver's is 'final'"):
        scripted("final", tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")


# ----------------------------------------------------------------------
# lookahead
# ----------------------------------------------------------------------


def test_lookahead_follows_the_formula():
    model = FixedGradientModel()
    start = {name: value.copy() for name, value in model.params.items()}
    data = {"X_train": np.zeros((4, 1)), "y_train": np.zeros(4, dtype=int)}
    Solver(model, data, update_rule="sgd", optim_config={"learning_rate": 0.1}, batch_size=1, num_epochs=3,
           verbose=False, seed=0, lookahead={"every": 5, "decay": 0.9, "power": 2.0}, result="final").train()
    # numpy reference: 12 steps of SGD, an update at steps 5 and 10, then params := average after step 12
    params = {name: value.copy() for name, value in start.items()}
    average = {name: value.copy() for name, value in start.items()}
    for step in range(1, 13):
        for name in params:
            params[name] = params[name] - 0.1 * model.data_grads[name]
        if step % 5 == 0:
            d = 0.9**5 * (step / 12) ** 2.0
            for name in params:
                average[name] = average[name] + (1 - d) * (params[name] - average[name])
                params[name] = average[name].copy()
    for name in params:
        np.testing.assert_allclose(model.params[name], average[name], rtol=1e-12, err_msg=name)


def test_lookahead_averages_the_batchnorm_statistics_too():
    model = small_convnet()
    solver = Solver(model, image_data(), batch_size=8, num_epochs=2, verbose=False, seed=0,
                    lookahead={"every": 2}).train()
    assert solver.lookahead.average.keys() == {"param/" + n for n in model.params} | {"bn/0/running_mean",
                                                                                       "bn/0/running_var"}
    np.testing.assert_array_equal(model.bn_params[0]["running_mean"], solver.lookahead.average["bn/0/running_mean"])
    for name, value in model.params.items():  # after the last step the model is the average
        np.testing.assert_array_equal(value, solver.lookahead.average["param/" + name])


def test_lookahead_resumes_exactly_and_its_average_is_in_the_checkpoint(tmp_path):
    def make(**kwargs):
        return Solver(small_convnet(), image_data(), update_rule="sgd_momentum", batch_size=8, num_epochs=2,
                      verbose=False, seed=5, lookahead={"every": 3}, result="final", **kwargs)

    assert_resumes_exactly(make, tmp_path, mid_epoch_iteration=7)
    arrays, _ = load_arrays_and_meta(tmp_path / "mid" / "checkpoint.npz")
    assert "lookahead/param/conv1.W" in arrays and "lookahead/bn/0/running_var" in arrays


def test_a_checkpoint_with_and_without_lookahead_do_not_mix(tmp_path):
    def make(directory, lookahead):
        return Solver(small_convnet(), image_data(), batch_size=8, num_epochs=2, verbose=False, seed=5,
                      lookahead=lookahead, checkpoint_dir=directory)

    make(tmp_path / "with", {"every": 3}).train(epochs=1)
    make(tmp_path / "without", None).train(epochs=1)
    with pytest.raises(CheckpointError, match=r"with solver.lookahead \{'every': 3, .*\}, but this solver's is null"):
        make(tmp_path / "with", None).load_checkpoint(tmp_path / "with" / "checkpoint.npz")
    newer = ("result", "lookahead", "groups", "schedule", "horizon", "selection_tta")
    for name in ("with", "without"):  # as written before the training options were recorded: its arrays tell
        path = tmp_path / name / "checkpoint.npz"
        arrays, meta = load_arrays_and_meta(path)
        save_arrays(path, arrays, {key: value for key, value in meta.items() if key not in newer})
    with pytest.raises(CheckpointError, match="holds a lookahead average, but this solver has no lookahead"):
        make(tmp_path / "with", None).load_checkpoint(tmp_path / "with" / "checkpoint.npz")
    with pytest.raises(CheckpointError, match="holds no lookahead average, but this solver has lookahead"):
        make(tmp_path / "without", {"every": 3}).load_checkpoint(tmp_path / "without" / "checkpoint.npz")


@pytest.mark.parametrize("lookahead, message", [
    ({"every": 0}, r"'lookahead.every' must be >= 1"),
    ({"decay": 1.5}, r"'lookahead.decay' must be in \[0, 1\]"),
    ({"evry": 5}, r"'lookahead.evry': unknown; did you mean 'every'"),
    (5, r"'lookahead' must be a mapping or null"),
])
def test_bad_lookahead_options_name_the_key(lookahead, message):
    with pytest.raises(ConfigError, match=message):
        Solver(small_convnet(), image_data(), verbose=False, lookahead=lookahead)


# ----------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------


def test_reflect_padding_crops_a_window_of_the_mirrored_border():
    X = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    out = random_crop(X, np.random.default_rng(0), padding=2, pad_mode="reflect")
    top = np.random.default_rng(0).integers(0, 5, size=2)
    left = np.random.default_rng(0).integers(0, 5, size=4)[2:]  # drawn after the tops, from the same stream
    for n in range(2):
        padded = np.pad(X[n, 0], 2, mode="reflect")
        np.testing.assert_array_equal(out[n, 0], padded[top[n] : top[n] + 4, left[n] : left[n] + 4])
    assert set(np.unique(out)) <= set(np.unique(X))  # no zeros brought in: every pixel is an image pixel


def test_reflect_padding_must_be_smaller_than_the_image():
    with pytest.raises(ValueError, match="padding=4 with pad_mode 'reflect' must be less than the image side"):
        random_crop(np.zeros((1, 1, 4, 4)), np.random.default_rng(0), padding=4, pad_mode="reflect")
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        augment_batch(np.zeros((1, 1, 4, 4)), np.random.default_rng(0), pad_mode="edge")


def test_the_alternating_flip_mirrors_a_random_half_then_alternates_each_image():
    X = np.random.default_rng(0).standard_normal((200, 1, 2, 3))
    indices = np.arange(200)
    epochs = [alternating_flip(X, indices, epoch, seed=7) for epoch in range(3)]
    mirrored = [np.all(out == X[:, :, :, ::-1], axis=(1, 2, 3)) for out in epochs]
    assert 70 < mirrored[0].sum() < 130
    np.testing.assert_array_equal(mirrored[1], ~mirrored[0])
    np.testing.assert_array_equal(mirrored[2], mirrored[0])
    # the bit is the image's, not its place in the batch, and another seed draws other bits
    order = np.random.default_rng(1).permutation(200)
    np.testing.assert_array_equal(alternating_flip(X[order], order, 0, seed=7), epochs[0][order])
    assert not np.array_equal(alternating_flip(X, indices, 0, seed=8), epochs[0])


def test_the_solver_passes_indices_and_epoch_and_plain_augment_functions_keep_working():
    calls = []

    def positional(X, rng, indices, epoch):
        calls.append((indices.copy(), epoch))
        return X

    data = image_data()
    solver = Solver(small_convnet(), data, batch_size=10, num_epochs=2, verbose=False, seed=0, augment=positional)
    solver.train()
    assert [epoch for _, epoch in calls] == [0, 0, 0, 1, 1, 1]
    assert sorted(np.concatenate([i for i, e in calls if e == 1])) == list(range(30))
    plain = []
    Solver(small_convnet(), data, batch_size=10, num_epochs=1, verbose=False, seed=0,
           augment=lambda X, rng: plain.append(len(X)) or X).train()
    assert plain == [10, 10, 10]
    with pytest.raises(ValueError, match="flip='alternating' needs the images' indices and the epoch"):
        augment_batch(data["X_train"], np.random.default_rng(0), flip="alternating")


def test_the_alternating_flip_and_reflect_padding_resume_exactly(tmp_path):
    import functools

    augment = functools.partial(augment_batch, crop_padding=2, pad_mode="reflect", flip="alternating", seed=3)

    def make(**kwargs):
        return Solver(small_convnet(), image_data(), batch_size=8, num_epochs=3, verbose=False, seed=6,
                      augment=augment, **kwargs)

    assert_resumes_exactly(make, tmp_path, mid_epoch_iteration=6)


# ----------------------------------------------------------------------
# test-time augmentation
# ----------------------------------------------------------------------


def test_tta_averages_the_logits_as_the_rule_says():
    model = small_convnet()
    model.set_mode("test")
    X = image_data()["X_train"][:5]
    mirror = X[:, :, :, ::-1]
    flip = 0.5 * (model.loss(X) + model.loss(mirror))
    np.testing.assert_allclose(tta_scores(model, X, "flip"), flip, rtol=1e-6)
    padded = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    up_left, down_right = padded[:, :, :8, :8], padded[:, :, 2:, 2:]
    assert np.array_equal(up_left[:, :, 1:, 1:], X[:, :, :7, :7])  # shifted by one pixel
    translated = [0.5 * (model.loss(Z) + model.loss(Z[:, :, :, ::-1])) for Z in (up_left, down_right)]
    np.testing.assert_allclose(tta_scores(model, X, "flip_translate"),
                               0.5 * flip + 0.25 * (translated[0] + translated[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predict_labels(model, X, 2, "flip"), np.argmax(flip, axis=1))


def test_the_solvers_val_check_uses_tta_and_non_image_models_are_refused(monkeypatch):
    seen = []
    import convnet.solver as solver_module

    real = solver_module.predict_labels
    monkeypatch.setattr(solver_module, "predict_labels", lambda *a, **k: seen.append(k.get("tta")) or real(*a, **k))
    Solver(small_convnet(), image_data(), batch_size=10, num_epochs=1, verbose=False, seed=0, tta="flip").train()
    assert seen == ["flip"]  # the val check; the train accuracy follows training progress without it
    flat = {"X_train": np.zeros((4, 3)), "y_train": np.zeros(4, dtype=int)}
    with pytest.raises(ConfigError, match=r"'tta' \('flip'\) needs images \(N, C, H, W\), but X_train has shape"):
        Solver(FixedGradientModel(), flat, verbose=False, tta="flip")
    with pytest.raises(ConfigError, match=r"'tta' must be one of \[null, 'flip', 'flip_translate'\]"):
        Solver(small_convnet(), image_data(), verbose=False, tta="mirror")


# ----------------------------------------------------------------------
# no validation split
# ----------------------------------------------------------------------


def test_without_a_validation_split_the_best_is_chosen_by_train_accuracy_and_final_keeps_the_last(tmp_path):
    data = image_data(validation=False)
    best = Solver(small_convnet(), data, batch_size=10, num_epochs=2, verbose=False, seed=0).train()
    assert best.best_selected_by == "train_acc" and best.best_val_acc is None
    final = Solver(small_convnet(), data, batch_size=10, num_epochs=2, verbose=False, seed=0, result="final").train()
    assert final.best_selected_by == "final" and final.best_epoch == 2


def test_a_run_that_ended_with_a_partial_epoch_is_not_extended(tmp_path):
    def make(num_epochs):
        return Solver(small_convnet(), image_data(), batch_size=8, num_epochs=num_epochs, verbose=False, seed=0,
                      checkpoint_dir=tmp_path)

    make(1.5).train()
    make(1.5).load_checkpoint(tmp_path / "checkpoint.npz").train()  # finishing it again is fine
    with pytest.raises(CheckpointError, match="whose last epoch was partial .* cannot be continued to 12 steps"):
        make(3).load_checkpoint(tmp_path / "checkpoint.npz")
