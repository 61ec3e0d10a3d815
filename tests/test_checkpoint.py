"""The checkpoint format (one list of fields, complete or refused), best.npz kept consistent
with checkpoint.npz, stale temporaries, and the Solver with a CS231n student-style model."""

import numpy as np
import pytest

from convnet import checkpoint
from convnet.checkpoint import CheckpointError, load_arrays_and_meta, save_arrays
from convnet.models import ConvNet
from convnet.solver import Solver


def small_convnet():
    return ConvNet([{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"], input_dim=(3, 8, 8),
                   num_classes=3, seed=1)


def image_data(n=40, validation=True):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    y = rng.integers(3, size=n)
    data = {"X_train": X[:30], "y_train": y[:30]}
    if validation:
        data.update(X_val=X[30:], y_val=y[30:])
    return data


def momentum_solver(directory, **kwargs):
    options = dict(update_rule="sgd_momentum", optim_config={"learning_rate": 1e-2}, batch_size=8, num_epochs=2,
                   seed=3, verbose=False, checkpoint_dir=directory)
    options.update(kwargs)
    return Solver(small_convnet(), image_data(), **options)


@pytest.fixture
def saved(tmp_path):
    """A run directory holding the checkpoint of one epoch of momentum SGD."""
    momentum_solver(tmp_path).train(epochs=1)
    return tmp_path / "checkpoint.npz"


def rewrite(path, drop_array=None, drop_meta=None):
    arrays, meta = load_arrays_and_meta(path)
    arrays.pop(drop_array, None)
    if drop_meta is not None:
        del meta[drop_meta]
    save_arrays(path, arrays, meta)


@pytest.mark.parametrize("drop_array, message", [
    ("param/conv1.W", "lacks the array.s. param/conv1.W"),
    ("optim/conv1.W/velocity", "lacks the array.s. optim/conv1.W/velocity"),  # not resumed with zero momentum
    ("best/param/fc_out.b", "lacks the array.s. best/param/fc_out.b"),
])
def test_a_checkpoint_missing_an_array_is_refused(saved, drop_array, message):
    rewrite(saved, drop_array=drop_array)
    with pytest.raises(CheckpointError, match=f"{saved}.* is incomplete: it {message}"):
        momentum_solver(saved.parent).load_checkpoint(saved)


@pytest.mark.parametrize("field", [field.name for field in checkpoint.FIELDS if not field.arrays])
def test_a_checkpoint_missing_any_field_is_refused(saved, field):
    rewrite(saved, drop_meta=field)
    with pytest.raises(CheckpointError, match=f"is incomplete: its metadata lacks {field}"):
        momentum_solver(saved.parent).load_checkpoint(saved)


def test_a_checkpoint_of_an_older_format_is_refused_as_such(saved):
    arrays, meta = load_arrays_and_meta(saved)
    del meta["seed"]
    save_arrays(saved, arrays, {**meta, "format": 2})
    with pytest.raises(CheckpointError, match=f"^{saved} is a format 2 checkpoint; this convnet reads format 3$"):
        momentum_solver(saved.parent).load_checkpoint(saved)


def test_adding_a_field_in_one_place_saves_and_restores_it(tmp_path, monkeypatch):
    extra = checkpoint.Field("note", lambda s: getattr(s, "note", "none"), lambda s, value: setattr(s, "note", value))
    monkeypatch.setattr(checkpoint, "FIELDS", [*checkpoint.FIELDS, extra])
    solver = momentum_solver(tmp_path)
    solver.note = "written"
    solver.train(epochs=1)
    assert momentum_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz").note == "written"


def test_damaged_files_are_refused_naming_the_file(saved):
    whole = saved.read_bytes()
    saved.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match=f"{saved} is damaged"):
        momentum_solver(saved.parent).load_checkpoint(saved)
    saved.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=f"{saved} is damaged"):
        momentum_solver(saved.parent).load_checkpoint(saved)
    save_arrays(saved, load_arrays_and_meta(saved.with_name("best.npz"))[0])  # weights, no metadata
    with pytest.raises(CheckpointError, match=f"{saved} is not a convnet training checkpoint"):
        momentum_solver(saved.parent).load_checkpoint(saved)


@pytest.mark.parametrize("content, message", [
    (np.random.default_rng(0).bytes(4096), "does not start like an .npz .zip. archive"),
    (b"PK\x03\x04" + np.random.default_rng(0).bytes(4096), "the .npz archive is incomplete"),
], ids=["random bytes", "a zip header, then garbage"])
def test_garbage_is_refused_without_advice_to_unpickle_it(saved, content, message):
    saved.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{saved} is damaged.*{message}") as refused:
        momentum_solver(saved.parent).load_checkpoint(saved)
    assert "pickle" not in str(refused.value)


def test_an_unreadable_file_is_refused_naming_the_file(saved, monkeypatch):
    def permission_denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checkpoint, "open", permission_denied, raising=False)  # shadows the builtin there
    with pytest.raises(CheckpointError, match=f"^{saved} cannot be read .Permission denied.$"):
        momentum_solver(saved.parent).load_checkpoint(saved)


def test_a_bare_npy_array_is_refused_naming_the_file(saved):
    with open(saved, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match=f"{saved} is not a convnet .npz file: it holds a single .npy array"):
        checkpoint.load_weights(small_convnet(), saved)


def test_a_state_that_does_not_fit_changes_nothing_and_names_the_arrays():
    model, other = small_convnet(), small_convnet()
    other.params["conv1.W"] += 1.0
    before = model.state()
    extra_layer = {**other.state(), "bn/5/running_mean": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match="bn/5/running_mean: this model has only 1 batch-norm layers"):
        model.load_state(extra_layer)
    no_bias = {key: value for key, value in other.state().items() if key != "param/fc_out.b"}
    with pytest.raises(ValueError, match="^state does not fit this model: it lacks param/fc_out.b$"):
        model.load_state(no_bias)
    for key, value in before.items():  # refused before anything was put back
        np.testing.assert_array_equal(model.state()[key], value, err_msg=key)


def test_a_checkpoint_for_another_model_is_refused_naming_the_file(saved):
    other = ConvNet([{"type": "conv_bn_relu", "filters": 6}, "pool", "global_avgpool"], input_dim=(3, 8, 8),
                    num_classes=3, seed=1)
    solver = Solver(other, image_data(), update_rule="sgd_momentum", batch_size=8, verbose=False)
    with pytest.raises(CheckpointError, match=f"{saved} does not fit this run"):
        solver.load_checkpoint(saved)


def test_a_resume_keeps_the_momentum_buffers_under_the_solvers_momentum(saved):
    arrays, meta = load_arrays_and_meta(saved)
    assert meta["optim_scalars"]["conv1.W"]["momentum"] == 0.9  # the default, set by the first run's updates
    resumed = momentum_solver(saved.parent, optim_config={"learning_rate": 1e-2, "momentum": 0.5})
    resumed.load_checkpoint(saved)
    for name, config in resumed.optim_configs.items():
        assert config["momentum"] == 0.5, name
        np.testing.assert_array_equal(config["velocity"], arrays[f"optim/{name}/velocity"], err_msg=name)


def test_resume_restores_momentum_buffers_exactly(saved):
    arrays, _ = load_arrays_and_meta(saved)
    resumed = momentum_solver(saved.parent).load_checkpoint(saved)
    np.testing.assert_array_equal(resumed.optim_configs["conv1.W"]["velocity"], arrays["optim/conv1.W/velocity"])


class ScriptedModel:
    """A CS231n student-style model (only ``params`` and ``loss``) whose accuracy follows a script.

    ``t`` counts the updates (its gradient is -1, so plain SGD with rate 1 adds one per step);
    after e epochs of training, a fraction ACCURACY[e] of any split is classified correctly.
    X[:, 0] holds the label, X[:, 1] a number in [0, 1) that decides which samples are right.
    """

    ACCURACY = [0.0, 0.25, 0.75, 0.5]  # best epoch 2: a later epoch does not beat it

    def __init__(self, steps_per_epoch):
        self.params = {"t": np.zeros(1), "W": np.ones((2, 2))}
        self.steps_per_epoch = steps_per_epoch

    def loss(self, X, y=None):
        if y is None:
            epoch = int(round(self.params["t"][0])) // self.steps_per_epoch
            right = X[:, 1] < self.ACCURACY[epoch]
            labels = np.where(right, X[:, 0], X[:, 0] + 1) % 3
            return np.eye(3)[labels.astype(int)]
        return 1.0, {"t": -np.ones(1), "W": np.zeros((2, 2))}


def scripted_data(n=20, validation=True):
    X = np.zeros((n, 2))
    X[:, 0] = np.arange(n) % 3
    X[:, 1] = (np.arange(n) + 0.5) / n
    data = {"X_train": X, "y_train": np.arange(n) % 3}
    if validation:
        data.update(X_val=X.copy(), y_val=np.arange(n) % 3)
    return data


def scripted_solver(directory=None, validation=True, **kwargs):
    return Solver(ScriptedModel(steps_per_epoch=4), scripted_data(validation=validation), update_rule="sgd",
                  optim_config={"learning_rate": 1.0}, batch_size=5, num_epochs=3, num_train_samples=None,
                  verbose=False, seed=0, checkpoint_dir=directory, **kwargs)


def test_a_model_with_only_params_and_loss_trains_evaluates_and_checkpoints(tmp_path):
    solver = scripted_solver(tmp_path).train()
    assert solver.val_acc_history == [0.25, 0.75, 0.5]
    assert solver.best_epoch == 2 and solver.best_val_acc == 0.75
    assert solver.model.params["t"][0] == 8.0  # CS231n: the model ends on the best epoch's parameters
    assert set(solver.best_params) == {"t", "W"}
    resumed = scripted_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert resumed.epoch == 3 and resumed.model.params["t"][0] == 12.0 and resumed.best_epoch == 2


def test_without_a_validation_split_best_val_acc_stays_empty(tmp_path):
    solver = scripted_solver(validation=False).train()
    assert solver.best_val_acc is None
    assert solver.val_acc_history == [None, None, None]
    assert solver.best_selected_by == "train_acc" and solver.best_epoch == 2


class Killed(BaseException):
    """Stands for the process being killed mid-way."""


def test_a_kill_between_the_best_and_the_checkpoint_write_leaves_them_consistent(tmp_path, monkeypatch):
    straight = scripted_solver(tmp_path / "straight").train()
    assert straight.best_epoch == 2
    expected, _ = load_arrays_and_meta(tmp_path / "straight" / "best.npz")

    run = tmp_path / "run"
    real_savez, calls = np.savez, []

    def savez_killed_on_the_second_write_of_epoch_2(file, **arrays):
        calls.append(file.name)
        if len(calls) == 4:  # epoch 1: best, checkpoint; epoch 2: the first write succeeds, the second is killed
            raise Killed
        return real_savez(file, **arrays)

    monkeypatch.setattr(np, "savez", savez_killed_on_the_second_write_of_epoch_2)
    with pytest.raises(Killed):
        scripted_solver(run).train()
    monkeypatch.setattr(np, "savez", real_savez)
    (run / "checkpoint.npz.deadbeef.tmp").write_bytes(b"half a file")  # what a real kill leaves behind

    resumed = scripted_solver(run).load_checkpoint(run / "checkpoint.npz").train()
    best, meta = load_arrays_and_meta(run / "best.npz")
    assert resumed.best_epoch == meta["epoch"] == 2
    assert sorted(best) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(best[key], value, err_msg=key)
    np.testing.assert_array_equal(resumed.model.params["t"], straight.model.params["t"])
    assert not list(run.glob("*.tmp")), "stale temporaries are removed when training starts"


def test_lr_decay_multiplies_the_rate_after_each_epoch():
    solver = scripted_solver(lr_decay=0.5).train()
    assert solver.lr_history == [1.0] * 4 + [0.5] * 4 + [0.25] * 4


def test_checkpoint_name_writes_one_loadable_file_per_epoch(tmp_path):
    name = tmp_path / "cs231n"
    solver = scripted_solver(checkpoint_name=str(name)).train()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"cs231n_epoch_{e}.npz" for e in (1, 2, 3)]
    for epoch in (1, 2, 3):
        resumed = scripted_solver().load_checkpoint(f"{name}_epoch_{epoch}.npz")
        assert resumed.epoch == epoch and resumed.model.params["t"][0] == 4.0 * epoch
    assert solver.last_checkpoint == tmp_path / "cs231n_epoch_3.npz"


def test_weight_decay_follows_the_models_regularisation_rule(tmp_path):
    class OnlyFirstLayer(ConvNet):
        def regularized(self):
            return ["conv1.W"]

    model = OnlyFirstLayer([{"type": "conv_bn_relu", "filters": 4}, "pool", "global_avgpool"], input_dim=(3, 8, 8),
                           num_classes=3, seed=1)
    solver = Solver(model, image_data(), update_rule="adamw", optim_config={"weight_decay": 0.1}, verbose=False)
    decayed = {name for name, config in solver.optim_configs.items() if config["weight_decay"]}
    assert decayed == {"conv1.W"}
    student = Solver(ScriptedModel(4), scripted_data(), update_rule="adamw", optim_config={"weight_decay": 0.1},
                     verbose=False)  # no regularized(): the same default rule, by dimension
    assert {n for n, c in student.optim_configs.items() if c["weight_decay"]} == {"W"}


class StudentDropoutNet:
    """A student's two-layer net: dropout masks from numpy's global generator, as CS231n's layers do."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.params = {"W1": 0.1 * rng.standard_normal((2, 6)), "W2": 0.1 * rng.standard_normal((6, 3))}

    def loss(self, X, y=None):
        h = np.maximum(X @ self.params["W1"], 0)
        mask = (np.random.rand(*h.shape) < 0.5) / 0.5 if y is not None else 1.0
        scores = (h * mask) @ self.params["W2"]
        if y is None:
            return scores
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(y)), y]))
        p[np.arange(len(y)), y] -= 1
        dscores = p / len(y)
        dh = (dscores @ self.params["W2"].T) * mask * (h > 0)
        return loss, {"W1": X.T @ dh, "W2": (h * mask).T @ dscores}


def test_a_student_model_drawing_from_numpy_global_generator_resumes_exactly(tmp_path):
    def solver(**kwargs):
        return Solver(StudentDropoutNet(), scripted_data(), update_rule="sgd_momentum", batch_size=5, num_epochs=2,
                      verbose=False, seed=0, checkpoint_dir=tmp_path, **kwargs)

    np.random.seed(231)
    straight = solver().train()
    np.random.seed(231)
    solver().train(epochs=1)
    np.random.seed(0)  # whatever happens in between
    resumed = solver().load_checkpoint(tmp_path / "checkpoint.npz").train()
    assert resumed.loss_history == straight.loss_history
    for name, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], value, err_msg=name)


def test_resuming_a_model_with_its_own_generator_leaves_numpy_global_generator_alone(saved):
    np.random.seed(231)  # a notebook's seed, set after the checkpoint was written
    expected = np.random.random_sample(4)
    np.random.seed(231)
    momentum_solver(saved.parent).load_checkpoint(saved)
    np.testing.assert_array_equal(np.random.random_sample(4), expected)
    assert load_arrays_and_meta(saved)[1]["numpy_global_rng"] is None  # ConvNet draws only from model.rng
