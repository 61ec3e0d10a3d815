"""Solver: true epochs, reproducibility, accuracy, checkpoints and resume, divergence, Ctrl-C."""

import os
import signal

import numpy as np
import pytest

from convnet.augment import augment_batch
from convnet.callbacks import Checkpoint
from convnet.checkpoint import CheckpointError, load_arrays_and_meta
from convnet.models import ConvNet
from convnet.models.base import Model
from convnet.solver import Solver, TrainingDiverged


class RecordingModel(Model):
    """A linear softmax classifier on flattened inputs that records each training batch."""

    def __init__(self, dims=4, classes=3, seed=0):
        super().__init__(seed=seed, dtype=np.float64)
        self.params = {"W": 0.01 * self.rng.standard_normal((dims, classes)), "b": np.zeros(classes)}
        self.batches = []

    def loss(self, X, y=None):
        X2 = X.reshape(len(X), -1)
        scores = X2 @ self.params["W"] + self.params["b"]
        if y is None:
            return scores
        self.batches.append(X2[:, 0].copy())
        loss, dscores = self.data_loss(scores, y)
        return loss, {"W": X2.T @ dscores, "b": dscores.sum(axis=0)}


def indexed_data(n=10, dims=4):
    """X[i, 0] = i, so a batch tells which training rows it holds."""
    X = np.zeros((n, dims))
    X[:, 0] = np.arange(n)
    X[:, 1:] = np.random.default_rng(0).standard_normal((n, dims - 1))
    y = np.arange(n) % 3
    return {"X_train": X, "y_train": y, "X_val": X[:4], "y_val": y[:4]}


def small_convnet(seed=1):
    return ConvNet([{"type": "conv_bn_relu", "filters": 4}, "pool", {"type": "dropout", "keep": 0.8},
                    "global_avgpool"], input_dim=(3, 8, 8), num_classes=3, seed=seed)


def image_data(rng, n=40):
    X = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    y = rng.integers(3, size=n)
    return {"X_train": X[:30], "y_train": y[:30], "X_val": X[30:], "y_val": y[30:]}


def convnet_solver(data, **kwargs):
    options = dict(update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=8, num_epochs=2, seed=3,
                   verbose=False, augment=augment_batch, schedule={"type": "cosine", "warmup_epochs": 0.5})
    options.update(kwargs)
    return Solver(small_convnet(), data, **options)


def test_each_epoch_visits_every_sample_once_including_the_last_partial_batch():
    model = RecordingModel()
    Solver(model, indexed_data(10), batch_size=4, num_epochs=3, seed=0, verbose=False).train()
    assert [len(b) for b in model.batches] == [4, 4, 2] * 3
    for epoch in range(3):
        seen = np.concatenate(model.batches[3 * epoch : 3 * epoch + 3])
        np.testing.assert_array_equal(np.sort(seen), np.arange(10))
    orders = [np.concatenate(model.batches[3 * e : 3 * e + 3]) for e in range(3)]
    assert not np.array_equal(orders[0], orders[1]), "each epoch draws a new order"


def test_same_seed_same_history_other_seed_differs(rng):
    data = image_data(rng)
    a = convnet_solver(data).train()
    b = convnet_solver(data).train()
    c = convnet_solver(data, seed=4).train()
    assert a.loss_history == b.loss_history
    assert a.loss_history != c.loss_history


def test_histories_and_schedule(rng):
    solver = convnet_solver(image_data(rng), num_epochs=3).train()
    assert len(solver.loss_history) == len(solver.lr_history) == 3 * 4
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 3
    # cosine with half an epoch of warm-up: the first step sits at epoch 0 (rate 0)
    assert solver.lr_history[0] == 0.0
    assert max(solver.lr_history) <= 1e-2 and solver.lr_history[-1] < solver.lr_history[4]


def test_check_accuracy_uses_the_whole_split_in_batches(rng):
    data = image_data(rng, 40)
    solver = convnet_solver(data)
    X, y = data["X_train"], data["y_train"]
    expected = np.mean(np.argmax(solver.model.loss(X), axis=1) == y)
    assert solver.check_accuracy(X, y, batch_size=7) == pytest.approx(expected)
    subset = solver.check_accuracy(X, y, num_samples=10)
    assert subset * 10 == pytest.approx(round(subset * 10))  # a fraction of 10 samples


def test_best_state_is_the_best_epochs_parameters_and_batchnorm_statistics(rng):
    states = []  # the model's state after each epoch

    def record(event, solver, info):
        if event == "epoch":
            states.append(solver.model.state())

    solver = convnet_solver(image_data(rng), num_epochs=3, callbacks=[record])
    measure, scripted = solver.check_accuracy, iter([0.2, 0.6, 0.4])  # epoch 2 is the best, not the last

    def check_accuracy(X, y, *args, **kwargs):
        accuracy = measure(X, y, *args, **kwargs)
        return next(scripted) if X is solver.X_val else accuracy

    solver.check_accuracy = check_accuracy
    solver.train()
    names = ["conv1.W", "bn1.gamma", "bn1.beta", "fc_out.W", "fc_out.b"]
    assert sorted(solver.best_state) == sorted([f"param/{name}" for name in names]
                                               + ["bn/0/running_mean", "bn/0/running_var"])
    assert (solver.best_epoch, solver.best_val_acc) == (2, 0.6)
    assert not np.array_equal(states[2]["param/conv1.W"], states[1]["param/conv1.W"]), "epoch 3 moved on"
    for key, value in states[1].items():
        np.testing.assert_array_equal(solver.best_state[key], value, err_msg=key)
        np.testing.assert_array_equal(solver.model.state()[key], value, err_msg=key)  # CS231n: the model ends there


def test_best_params_are_keyed_like_model_params(rng):
    solver = convnet_solver(image_data(rng), num_epochs=2).train()
    best = solver.best_params
    assert set(best) == set(solver.model.params)
    for name, value in best.items():
        np.testing.assert_array_equal(value, solver.best_state[f"param/{name}"])
    solver.model.params = solver.best_params  # the CS231n idiom
    assert solver.check_accuracy(solver.X_val, solver.y_val) == solver.val_acc_history[solver.best_epoch - 1]


def test_adamw_weight_decay_spares_one_dimensional_parameters(rng):
    solver = convnet_solver(image_data(rng), update_rule="adamw", optim_config={"learning_rate": 1e-3,
                                                                               "weight_decay": 0.1})
    assert solver.optim_configs["conv1.W"]["weight_decay"] == 0.1
    assert solver.optim_configs["bn1.gamma"]["weight_decay"] == 0.0
    assert solver.optim_configs["fc_out.b"]["weight_decay"] == 0.0


def test_two_epochs_equal_one_plus_resume_plus_one(rng, tmp_path):
    data = image_data(rng)
    straight = convnet_solver(data).train()
    first = convnet_solver(data, checkpoint_dir=tmp_path).train(epochs=1)
    assert first.epoch == 1 and (tmp_path / "checkpoint.npz").is_file() and (tmp_path / "best.npz").is_file()
    resumed = convnet_solver(data, checkpoint_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint.npz").train()
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value, err_msg=key)
    assert resumed.loss_history == straight.loss_history
    assert resumed.val_acc_history == straight.val_acc_history


def test_ctrl_c_saves_mid_epoch_and_resume_matches(rng, tmp_path):
    data = image_data(rng)
    straight = convnet_solver(data).train()

    def interrupt(event, solver, info):
        if event == "iteration" and info["iteration"] == 6:  # halfway through epoch 2
            os.kill(os.getpid(), signal.SIGINT)

    stopped = convnet_solver(data, checkpoint_dir=tmp_path, callbacks=[interrupt]).train()
    assert stopped.interrupted and stopped.iteration == 6
    _, meta = load_arrays_and_meta(tmp_path / "checkpoint.npz")
    assert (meta["epoch"], meta["batch_in_epoch"]) == (1, 2)
    resumed = convnet_solver(data, checkpoint_dir=tmp_path).load_checkpoint(tmp_path / "checkpoint.npz").train()
    for key, value in straight.model.params.items():
        np.testing.assert_array_equal(resumed.model.params[key], value, err_msg=key)


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_checkpoint(rng, tmp_path):
    data = image_data(rng)
    solver = convnet_solver(data, checkpoint_dir=tmp_path, num_epochs=3)
    solver.train(epochs=1)
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def poison(event, solver, info):
        if event == "iteration" and info["iteration"] == 6:
            solver.model.params["fc_out.W"][...] = np.nan

    solver.callbacks.append(poison)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1\.\d+ .*last good checkpoint"):
        solver.train()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_write_is_atomic(rng, tmp_path, monkeypatch):
    solver = convnet_solver(image_data(rng), checkpoint_dir=tmp_path)
    solver.train(epochs=1)
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        Checkpoint(tmp_path).save(solver)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_refuses_a_checkpoint_for_other_data(rng, tmp_path):
    convnet_solver(image_data(rng), checkpoint_dir=tmp_path).train(epochs=1)
    other = convnet_solver(image_data(rng, 20), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="was written for 30 training images .* this solver has 20"):
        other.load_checkpoint(tmp_path / "checkpoint.npz")


def test_callbacks_see_iterations_epochs_and_the_end(rng):
    events = []
    convnet_solver(image_data(rng), callbacks=[lambda event, solver, info: events.append((event, info))]).train()
    kinds = [event for event, _ in events]
    assert kinds.count("iteration") == 8 and kinds.count("epoch") == 2 and kinds[-1] == "end"
    epoch_info = [info for event, info in events if event == "epoch"][0]
    assert {"train_acc", "val_acc", "loss", "images_per_second", "learning_rate"} <= set(epoch_info)


def test_bad_arguments_are_named(rng):
    with pytest.raises(ValueError, match=r"^Solver argument 'update_rule' must be one of \[.*\], got 'adm'; "
                                         r"did you mean 'adam'\?$"):
        Solver(small_convnet(), image_data(rng), update_rule="adm")
    with pytest.raises(ValueError, match=r"^Solver argument 'lr_decay' must be in \(0, 1\], got 2$"):
        Solver(small_convnet(), image_data(rng), lr_decay=2)
    with pytest.raises(ValueError, match=r"^Solver argument 'schedule.type' must be one of"):
        Solver(small_convnet(), image_data(rng), schedule={"type": "cosin"})
    with pytest.raises(ValueError, match=r"^Solver argument 'batch_size' must be >= 1, got 0$"):
        Solver(small_convnet(), image_data(rng), batch_size=0)
    with pytest.raises(ValueError, match=r"^Solver argument 'eval_batch_size' must be an integer >= 1, got 2.5$"):
        Solver(small_convnet(), image_data(rng), eval_batch_size=2.5)
    with pytest.raises(ValueError, match=r"^Solver argument 'num_train_samples' must be >= 1, got 0$"):
        Solver(small_convnet(), image_data(rng), num_train_samples=0)
    with pytest.raises(ValueError, match=r"^Solver argument 'schedule.warmup_epochs' must be less than num_epochs "
                                         r"\(2\), got 2$"):
        Solver(small_convnet(), image_data(rng), schedule={"type": "cosine", "warmup_epochs": 2}, num_epochs=2)
    with pytest.raises(ValueError, match="same, non-zero number of samples"):
        Solver(small_convnet(), {"X_train": np.zeros((3, 3, 8, 8)), "y_train": np.zeros(2, int)})


def test_the_checkpoint_event_comes_after_the_file_is_on_disk(rng, tmp_path):
    seen = []

    def on_checkpoint(event, solver, info):
        if event == "checkpoint":
            _, meta = load_arrays_and_meta(info["path"])  # readable now, and holding this very state
            seen.append((info["reason"], meta["iteration"], solver.iteration, (tmp_path / "best.npz").is_file()))

    convnet_solver(image_data(rng), checkpoint_dir=tmp_path, callbacks=[on_checkpoint]).train()
    assert seen == [("epoch", 4, 4, True), ("epoch", 8, 8, True)]


def test_verbose_prints_cs231n_progress_lines(rng, capsys):
    convnet_solver(image_data(rng), verbose=True, progress=False, print_every=3).train()
    heads = [line.split(")")[0] for line in capsys.readouterr().out.splitlines()]
    assert heads == ["(Iteration 3 / 8", "(Epoch 1 / 2", "(Iteration 6 / 8", "(Epoch 2 / 2"]


def test_the_progress_bar_runs_on_stderr(rng, capsys):
    convnet_solver(image_data(rng), verbose=True, progress=True).train()
    captured = capsys.readouterr()
    assert "epoch 1/2" in captured.err and "epoch 2/2" in captured.err
    assert "(Iteration" not in captured.out and captured.out.count("(Epoch") == 2
