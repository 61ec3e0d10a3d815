"""The merged issue-11 features together: a net built like the fast recipe (whitening, GELU,
conv_pool_bn_act with dirac init and no BN scale, a scaled head without bias, label smoothing),
trained with parameter groups, a whitening bias frozen after epoch 1, lookahead, the alternating flip
with reflect crops, fractional epochs, result final and no validation split, stopped by a real SIGINT
mid-epoch and at an epoch end and resumed bit for bit, without recomputing the whitening filters."""

import functools

import numpy as np
from test_training_features import assert_resumes_exactly

from convnet.augment import augment_batch
from convnet.checkpoint import load_arrays
from convnet.models import ConvNet
from convnet.solver import Solver

WHITENING = ("whiten1.W",)  # (its bias, frozen from epoch 1, still follows the lookahead's params := avg)
LAYERS = [
    {"type": "whiten", "size": 2, "images": 20, "bias_epochs": 1},  # (3, 16, 16) -> (24, 15, 15)
    "gelu",
    {"type": "conv_pool_bn_act", "filters": 8, "init": "dirac", "scale": False, "activation": "gelu",
     "floor": True},  # -> (8, 7, 7)
    {"type": "conv_pool_bn_act", "filters": 8, "init": "dirac", "scale": False, "activation": "gelu",
     "floor": True},  # -> (8, 3, 3)
    {"type": "pool", "size": 3},  # -> (8, 1, 1)
]


def recipe_like_net():
    return ConvNet(LAYERS, input_dim=(3, 16, 16), num_classes=3, head_bias=False, head_scale=0.5,
                   label_smoothing=0.2, seed=4)


def training_images(n=30):
    rng = np.random.default_rng(8)
    return {"X_train": rng.standard_normal((n, 3, 16, 16)).astype(np.float32), "y_train": rng.integers(3, size=n)}


def counting_initialization(model):
    """Wrap model.initialize_from_data to record its calls in model.initialized (a list of image counts)."""
    model.initialized = []
    original = model.initialize_from_data

    def initialize_from_data(X):
        model.initialized.append(len(X))
        return original(X)

    model.initialize_from_data = initialize_from_data
    return model


def test_a_recipe_like_run_resumes_bit_for_bit_without_recomputing_the_whitening(tmp_path):
    augment = functools.partial(augment_batch, crop_padding=2, pad_mode="reflect", flip="alternating", seed=5)
    made = []

    def make(**kwargs):
        solver = Solver(counting_initialization(recipe_like_net()), training_images(), update_rule="nesterov",
                        optim_config={"learning_rate": 0.02}, batch_size=8, num_epochs=2.5, num_train_samples=10,
                        verbose=False, seed=7, augment=augment, result="final",
                        groups=[{"params": "*.beta", "lr_multiplier": 4.0}],
                        lookahead={"every": 3, "decay": 0.9, "power": 2}, **kwargs)
        checkpoint = kwargs.get("checkpoint_dir") and kwargs["checkpoint_dir"] / "checkpoint.npz"
        if checkpoint and checkpoint.exists():  # about to resume from it: keep its whitening
            solver.whitening_resumed_from = {name: load_arrays(checkpoint)[f"param/{name}"] for name in WHITENING}
        made.append(solver)
        return solver

    # 4 steps an epoch, ceil(2.5 * 4) = 10 in all; the SIGINT lands at step 6, in the second epoch
    straight = assert_resumes_exactly(make, tmp_path, mid_epoch_iteration=6)
    assert straight.iteration == 10 and straight.model.frozen >= {"whiten1.W", "whiten1.b"}
    assert straight.model.freeze_after["whiten1.b"] == 1
    fresh, resumed = made[:3], made[3:]
    assert [solver.model.initialized for solver in fresh] == [[30], [30], [30]]
    assert [solver.model.initialized for solver in resumed] == [[], []], "a resume recomputed the whitening"
    for solver in resumed:  # the filters, frozen from the start, are still the checkpoint's
        for name, saved in solver.whitening_resumed_from.items():
            np.testing.assert_array_equal(solver.model.params[name], saved, err_msg=name)
