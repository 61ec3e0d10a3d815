"""Ctrl-C and divergence: a real SIGINT delivered inside a step or an evaluation, resumed
bit for bit; non-finite parameters are never checkpointed."""

import functools
import os
import signal

import numpy as np
import pytest

from convnet import optim
from convnet.augment import augment_batch
from convnet.models import ConvNet
from convnet.solver import Solver, TrainingDiverged
from runs import assert_same_state


def small_convnet():
    return ConvNet([{"type": "conv_bn_relu", "filters": 4}, "pool", {"type": "dropout", "keep": 0.8},
                    "global_avgpool"], input_dim=(3, 8, 8), num_classes=3, seed=1)


def image_data(n=40):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
    y = rng.integers(3, size=n)
    return {"X_train": X[:30], "y_train": y[:30], "X_val": X[30:], "y_val": y[30:]}


def kill_on_call(function, call, signum=signal.SIGINT):
    """``function`` wrapped to send this process a real ``signum`` at the end of its ``call``-th call
    (1-based): once the work is done (generator drawn from, statistics updated), before it returns."""
    calls = [0]

    @functools.wraps(function)  # keeps its name: a checkpoint records the update rule's
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        calls[0] += 1
        if calls[0] == call:
            os.kill(os.getpid(), signum)
        return result

    return wrapped


def make_solver(tmp_path, update_rule=optim.adam, augment=augment_batch, num_epochs=3):
    # num_train_samples=10: the train accuracy draws a subset from the solver's generator.
    return Solver(small_convnet(), image_data(), update_rule=update_rule, optim_config={"learning_rate": 1e-2},
                  batch_size=8, num_epochs=num_epochs, num_train_samples=10, seed=3, verbose=False, augment=augment,
                  schedule={"type": "cosine", "warmup_epochs": 0.5}, checkpoint_dir=tmp_path)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return make_solver(tmp_path_factory.mktemp("straight")).train()


NUM_PARAMS = len(small_convnet().params)  # update-rule calls per step


# where the SIGINT lands -> (completed epochs, iterations) when the run stops; 4 steps an epoch
WHERE = {
    "update rule, mid-step": (1, 6),  # step 6, after three of its parameter updates
    "augmentation": (1, 7),
    "forward pass": (0, 3),
    "evaluation of epoch 2": (2, 8),
    "evaluation of epoch 3": (3, 12),
}


@pytest.mark.parametrize("where", WHERE)
def test_sigint_inside_a_step_or_an_evaluation_resumes_bit_for_bit(tmp_path, straight, where):
    if where == "update rule, mid-step":
        stopped = make_solver(tmp_path, update_rule=kill_on_call(optim.adam, 5 * NUM_PARAMS + 3))
    elif where == "augmentation":
        stopped = make_solver(tmp_path, augment=kill_on_call(augment_batch, 7))
    else:
        stopped = make_solver(tmp_path)
        model = stopped.model
        if where == "forward pass":
            model.loss = kill_on_call(model.loss, 3)
        else:  # predict runs twice an epoch (train subset, then validation): call 4 is epoch 2's validation
            model.predict = kill_on_call(model.predict, 4 if where.endswith("2") else 6)
    handler_before = signal.getsignal(signal.SIGINT)
    stopped.train()
    assert stopped.interrupted and (stopped.epoch, stopped.iteration) == WHERE[where]
    assert stopped.stop_signal == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is handler_before, "train() restores the previous SIGINT handler"
    resumed = make_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert (resumed.epoch, resumed.iteration) == WHERE[where]
    resumed.train()
    assert not resumed.interrupted
    assert_same_state(resumed, straight)


@pytest.mark.parametrize("where, call, stops_at", [
    ("update rule, mid-step", 5 * NUM_PARAMS + 3, (1, 6)),
    ("forward pass", 3, (0, 3)),
])
def test_sigterm_inside_a_step_stops_between_steps_and_resumes_bit_for_bit(tmp_path, straight, sigterm_raises,
                                                                           where, call, stops_at):
    if where == "forward pass":
        stopped = make_solver(tmp_path)
        stopped.model.loss = kill_on_call(stopped.model.loss, call, signal.SIGTERM)
    else:
        stopped = make_solver(tmp_path, update_rule=kill_on_call(optim.adam, call, signal.SIGTERM))
    stopped.train()
    assert stopped.interrupted and stopped.stop_signal == signal.SIGTERM
    assert (stopped.epoch, stopped.iteration) == stops_at
    assert signal.getsignal(signal.SIGTERM) is sigterm_raises, "train() restores the previous SIGTERM handler"
    resumed = make_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert (resumed.epoch, resumed.iteration) == stops_at
    resumed.train()
    assert not resumed.interrupted and resumed.stop_signal is None
    assert_same_state(resumed, straight)


def test_sigint_during_the_last_evaluation_keeps_that_epoch(tmp_path, straight):
    stopped = make_solver(tmp_path)
    stopped.model.predict = kill_on_call(stopped.model.predict, 6)  # epoch 3's validation
    stopped.train()
    assert stopped.interrupted and stopped.epoch == 3
    assert stopped.val_acc_history == straight.val_acc_history and stopped.best_epoch == straight.best_epoch


def poison_on_call(call):
    """Adam that, on its ``call``-th call, returns an infinite parameter (a finite loss was computed first)."""
    calls = [0]

    @functools.wraps(optim.adam)
    def rule(w, dw, config):
        calls[0] += 1
        w, config = optim.adam(w, dw, config)
        if calls[0] == call:
            w = np.full_like(w, np.inf)
        return w, config

    return rule


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_inf_parameters_from_the_last_update_of_the_first_epoch_are_never_checkpointed(tmp_path):
    solver = make_solver(tmp_path, update_rule=poison_on_call(4 * NUM_PARAMS))  # last update of epoch 1
    with pytest.raises(TrainingDiverged, match="became NaN or infinite .*no checkpoint had been written yet"):
        solver.train()
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "best.npz").exists()


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_inf_parameters_at_a_later_epoch_end_leave_the_last_good_checkpoint(tmp_path):
    solver = make_solver(tmp_path, update_rule=poison_on_call(8 * NUM_PARAMS))  # last update of epoch 2
    with pytest.raises(TrainingDiverged, match="last good checkpoint, .*checkpoint.npz, is intact"):
        solver.train()
    assert solver.last_checkpoint == tmp_path / "checkpoint.npz"
    resumed = make_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert resumed.epoch == 1 and all(np.all(np.isfinite(w)) for w in resumed.model.params.values())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning", "ignore:overflow:RuntimeWarning")
def test_a_resume_that_writes_no_checkpoint_keeps_written_and_resumed_from_apart(tmp_path):
    make_solver(tmp_path).train(epochs=1)
    resumed = make_solver(None, update_rule=poison_on_call(4 * NUM_PARAMS))  # no checkpoints; diverges in epoch 2
    resumed.load_checkpoint(tmp_path / "checkpoint.npz")
    with pytest.raises(TrainingDiverged, match="last good checkpoint, .*checkpoint.npz, is intact"):
        resumed.train()
    assert resumed.resumed_from == tmp_path / "checkpoint.npz" and resumed.last_checkpoint is None


def test_a_second_sigint_stops_at_once_without_saving(tmp_path):
    def twice(event, solver, info):
        if event == "epoch_start" and solver.epoch == 1:
            solver.model.loss = kill_on_call(kill_on_call(solver.model.loss, 1), 1)

    solver = make_solver(tmp_path)
    solver.callbacks.insert(0, twice)
    with pytest.raises(KeyboardInterrupt):
        solver.train()
    resumed = make_solver(tmp_path).load_checkpoint(tmp_path / "checkpoint.npz")
    assert (resumed.epoch, resumed.batch_in_epoch) == (1, 0)  # the epoch-1 checkpoint, untouched
