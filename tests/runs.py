"""The tiny experiment the command-line tests train, helpers for its run directories, and the one
comparison of two solvers' training states."""

import numpy as np
import yaml

from convnet.checkpoint import solver_checkpoint

# Bundled sample, two epochs of four batches, batch norm, augmentation and momentum: small enough
# to train in about a second, and holding every kind of state a resume must restore.
TINY = {
    "name": "tiny",
    "seed": 1,
    "data": {"source": "sample", "num_training": 120, "num_validation": 40, "num_test": 60,
             "normalization": "per_channel", "augment": {"flip": True, "crop_padding": 2}},
    "model": {"type": "ConvNet", "layers": [{"type": "conv_bn_relu", "filters": 4}, "pool", "pool", "pool",
                                            "global_avgpool"]},
    "optim": {"rule": "sgd_momentum", "learning_rate": 0.05},
    "solver": {"batch_size": 32, "num_epochs": 2, "num_train_samples": 60, "print_every": 2},
}


def write_config(directory, **changes):
    """Write TINY to directory/tiny.yaml with ``changes``: a dict updates that section, anything else replaces it."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def only_run_dir(output):
    """The one run directory that training under --output-dir ``output`` made."""
    (run_dir,) = list((output / "tiny").iterdir())
    return run_dir


def snapshot(directory):
    """{file name: bytes} of a directory, to show that a command changed nothing."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


#: Checkpoint fields that measure time, which two runs never share.
TIMINGS = ("epoch_seconds", "train_seconds", "epoch_train_seconds")


def assert_same_state(actual, expected):
    """Everything a checkpoint of each solver would hold (parameters, optimizer buffers, batch-norm
    statistics, random generators, histories, best state...) is equal, timings aside."""
    arrays_a, meta_a = solver_checkpoint(actual)
    arrays_b, meta_b = solver_checkpoint(expected)
    assert sorted(arrays_a) == sorted(arrays_b)
    for key, value in arrays_b.items():
        np.testing.assert_array_equal(arrays_a[key], value, err_msg=key)
    for key in meta_b:
        if key not in TIMINGS:
            assert meta_a[key] == meta_b[key], key
