"""Data-parallel training (convnet.distributed): the sharding arithmetic and launch detection
without MPI, then real ``mpiexec -n 2`` runs (skipped without mpi4py; the test extra installs
it with the mpich wheel): K ranks train the model one process would, stay bit-identical,
write one run directory, and stop and resume on any number of ranks."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convnet import distributed, experiment, threads, train
from convnet.augment import augment_batch
from convnet.callbacks import Lookahead
from convnet.checkpoint import load_arrays, load_arrays_and_meta
from convnet.distributed import DistributedError, Launch, Local, communicator, detect_launch, shard_bounds
from convnet.models import ConvNet
from convnet.solver import Solver

from runs import only_run_dir, write_config

TESTS = Path(__file__).parent

# ----------------------------------------------------------------------
# without MPI
# ----------------------------------------------------------------------


@pytest.mark.parametrize("count, size, expected", [
    (10, 3, [(0, 4), (4, 7), (7, 10)]),  # uneven: the first count % size ranks get one more
    (7, 2, [(0, 4), (4, 7)]),  # a full batch of 7 on 2 ranks
    (1, 2, [(0, 1), (1, 1)]),  # the last partial batch of 1 image: rank 1's shard is empty
    (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),
    (8, 1, [(0, 8)]),
])
def test_shards_are_contiguous_in_rank_order_and_differ_by_at_most_one(count, size, expected):
    assert [shard_bounds(count, size, rank) for rank in range(size)] == expected


def test_shards_cover_every_row_once_for_every_split():
    for size in range(1, 6):
        for count in range(0, 23):
            bounds = [shard_bounds(count, size, rank) for rank in range(size)]
            rows = [row for start, stop in bounds for row in range(start, stop)]
            assert rows == list(range(count)), (count, size)
            lengths = [stop - start for start, stop in bounds]
            assert max(lengths) - min(lengths) <= 1


@pytest.mark.parametrize("environ, expected", [
    ({}, Launch(None, None)),
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, Launch(4, "MPICH/Intel MPI (PMI), PMI_SIZE=4")),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, Launch(2, "Open MPI, OMPI_COMM_WORLD_SIZE=2")),
    ({"PMI_RANK": "0"}, Launch(None, "PMI_RANK is set")),
    ({"SLURM_PROCID": "0"}, Launch(None, None)),  # a batch job without an MPI launcher is one process
])
def test_launch_detection_reads_what_mpi_launchers_set(environ, expected):
    assert detect_launch(environ) == expected


def test_without_a_launcher_auto_is_one_local_process():
    assert isinstance(communicator("auto", environ={}), Local)
    assert isinstance(communicator("off", environ={"PMI_SIZE": "2"}), Local)


@pytest.fixture
def no_mpi4py(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError


def test_a_launch_under_mpiexec_without_mpi4py_is_refused_naming_the_extra(no_mpi4py):
    with pytest.raises(DistributedError, match=r"started by an MPI launcher \(Open MPI, OMPI_COMM_WORLD_SIZE=2\) "
                                               r"but mpi4py is not installed: pip install 'convnet\[mpi\]'"):
        communicator("auto", environ={"OMPI_COMM_WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="--distributed mpi was given but mpi4py is not installed"):
        communicator("mpi", environ={})


def test_train_under_mpiexec_without_mpi4py_stops_with_one_line_before_loading_data(tmp_path, no_mpi4py, monkeypatch,
                                                                                    capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    status = train.main([str(write_config(tmp_path)), "--output-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == train.EXIT_ERROR
    assert err.count("\n") == 1 and "mpi4py is not installed" in err
    assert not (tmp_path / "runs").exists()


def test_ranks_on_one_machine_share_its_cpus_by_default(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    monkeypatch.setattr(threads._omp, "openmp_enabled", lambda: True)
    assert [threads.default_num_threads(ranks) for ranks in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_one_process_never_imports_mpi4py():
    """mpi4py starts MPI when imported: only a run that uses MPI may do it (in convnet.distributed)."""
    code = ("import sys, convnet.train; from convnet.distributed import communicator; communicator('auto', {}); "
            "print('mpi4py' in sys.modules)")
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PMI_", "OMPI_", "PMIX_"))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environ)
    assert result.stdout.strip() == "False", result.stderr


def test_the_local_communicator_leaves_the_solver_as_it_was():
    """With one process the Solver's code path is the same: Local passes the model's own loss through."""
    model, data = model_and_data(np.float64)
    X, y = data["X_train"][:7], data["y_train"][:7]
    expected_loss, expected_grads = model.loss(X, y)
    loss, grads = Local().loss_and_grads(model, X, y, stop=True)
    assert loss == expected_loss and grads.keys() == expected_grads.keys()
    for name, value in expected_grads.items():
        np.testing.assert_array_equal(grads[name], value)
    assert Local().stop_after_step(True) and not Local().any(False)


class PlusOne(Local):
    """A communicator whose mean over the ranks adds 1: it shows which arrays are averaged."""

    def mean(self, array):
        return array + 1


def test_running_statistics_are_averaged_in_the_model_and_the_lookahead_average_but_not_parameters():
    solver = make_solver(np.float64, batchnorm=True)
    solver.lookahead = Lookahead(every=2)
    solver.lookahead("start", solver, {})
    solver.step()  # creates the running statistics; the lookahead adds them at its update
    solver.lookahead.update(solver.model, 0.5)
    before, average = solver.model.state(), {key: value.copy() for key, value in solver.lookahead.average.items()}
    assert any(key.startswith("bn/") for key in before) and average.keys() == before.keys()
    PlusOne().average_running_statistics(solver.model, solver.lookahead)
    after = solver.model.state()
    for key in before:
        shift = 1 if key.startswith("bn/") else 0
        np.testing.assert_array_equal(after[key], before[key] + shift, err_msg=key)
        np.testing.assert_array_equal(solver.lookahead.average[key], average[key] + shift, err_msg=key)


# ----------------------------------------------------------------------
# the fixture shared with the MPI script: 29 images in batches of 7 -> 7, 7, 7, 7 and 1, so on
# two ranks the shards are 4 and 3, and the last batch leaves rank 1 with none.
# ----------------------------------------------------------------------


def model_and_data(dtype, batchnorm=False, dropout=False):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 3, 8, 8)).astype(dtype)
    y = rng.integers(3, size=40)
    first = {"type": "conv_bn_relu" if batchnorm else "conv_relu", "filters": 4}
    middle = [{"type": "dropout", "keep": 0.7}] if dropout else []
    model = ConvNet([first, "pool", *middle, {"type": "conv_relu", "filters": 6}, "global_avgpool"],
                    input_dim=(3, 8, 8), num_classes=3, reg=1e-3, dtype=dtype, seed=2)
    model.draw_new_dropout_masks()
    return model, {"X_train": X[:29], "y_train": y[:29], "X_val": X[29:], "y_val": y[29:]}


def recipe_like_model_and_data(dtype):
    """model_and_data's images through a net of the fast recipe's parts whose result does not depend
    on the number of ranks (no batch norm): whitening, GELU, dirac init, floor pooling, a scaled head
    without bias, label smoothing."""
    _, data = model_and_data(dtype)
    model = ConvNet([{"type": "whiten", "size": 2, "bias_epochs": 2}, "gelu",  # -> (24, 7, 7)
                     {"type": "conv_relu", "filters": 6, "init": "dirac"}, {"type": "pool", "floor": True},  # -> 3x3
                     {"type": "pool", "size": 3}], input_dim=(3, 8, 8), num_classes=3, head_bias=False,
                    head_scale=0.5, label_smoothing=0.2, reg=1e-3, dtype=dtype, seed=2)
    return model, data


RECIPE_TRAINING = {
    "groups": [{"params": "conv1.b", "frozen": True}, {"params": "fc_out.*", "lr_multiplier": 2.0}],
    "lookahead": {"every": 2, "decay": 0.9, "power": 1},
    "augment": functools.partial(augment_batch, crop_padding=1, pad_mode="reflect", flip="alternating", seed=3),
}


def make_solver(dtype, batchnorm=False, communicator=None, dropout=False, recipe=False):
    model, data = recipe_like_model_and_data(dtype) if recipe else model_and_data(dtype, batchnorm, dropout)
    training = RECIPE_TRAINING if recipe else {"augment": augment_batch}
    return Solver(model, data, update_rule="sgd_momentum", optim_config={"learning_rate": 0.05}, batch_size=7,
                  num_epochs=3, num_train_samples=10, seed=4, verbose=False, communicator=communicator, **training)


SOLVER_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from convnet.distributed import communicator
from test_distributed import make_solver

comm = communicator("mpi")
dtype, kind, out = np.dtype(sys.argv[1]), sys.argv[2], sys.argv[3]
solver = make_solver(dtype, kind == "bn", comm, dropout=kind == "dropout", recipe=kind == "recipe").train()
states = comm.comm.gather(solver.model.state())
if comm.is_root:
    arrays = {{f"rank{{rank}}/{{key}}": value for rank, state in enumerate(states) for key, value in state.items()}}
    np.savez(out, loss=np.array(solver.loss_history), train_acc=np.array(solver.train_acc_history),
             model_rng=np.array(str(solver.model.rng.bit_generator.state)),
             val_acc=np.array(solver.val_acc_history), **arrays)
"""

# ----------------------------------------------------------------------
# with MPI: mpiexec -n 2
# ----------------------------------------------------------------------

needs_mpi = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mpi4py") is None, reason="mpi4py is not installed (pip install "
                                                                     "'convnet[mpi]')")


def mpiexec(ranks, *arguments, timeout=120):
    """Run ``python ARGUMENTS`` on ``ranks`` ranks with the mpiexec of mpi4py's MPI library."""
    command = [distributed.mpiexec_path(), "-n", str(ranks), sys.executable, *map(str, arguments)]
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PMI_", "OMPI_", "PMIX_"))}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environ, cwd=TESTS.parent)


def run_solver_on_two_ranks(tmp_path, dtype, kind="plain"):
    script = tmp_path / "solver_script.py"
    script.write_text(SOLVER_SCRIPT.format(tests=str(TESTS)))
    result = mpiexec(2, script, np.dtype(dtype).name, kind, tmp_path / "ranks.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "ranks.npz") as saved:
        return dict(saved)


@needs_mpi
@pytest.mark.parametrize("dtype, rtol, kind", [(np.float64, 1e-10, "plain"), (np.float32, 1e-4, "plain"),
                                               (np.float64, 1e-10, "dropout"), (np.float64, 1e-10, "recipe")])
def test_two_ranks_train_the_model_one_process_trains_with_the_same_global_batch(tmp_path, dtype, rtol, kind):
    """Dropout too: each rank keeps its rows of the masks of the whole batch. And the recipe's parts
    without batch norm: frozen groups, a whitening bias frozen after epoch 2, lookahead, label smoothing,
    the alternating flip with reflect crops (every rank augments the whole batch, then keeps its rows)."""
    saved = run_solver_on_two_ranks(tmp_path, dtype, kind)
    one = make_solver(dtype, dropout=kind == "dropout", recipe=kind == "recipe").train()
    assert len(saved["loss"]) == len(one.loss_history) == 15  # 5 batches (the last of 1 image) for 3 epochs
    np.testing.assert_allclose(saved["loss"], one.loss_history, rtol=rtol)
    for key, value in one.model.state().items():
        np.testing.assert_allclose(saved[f"rank0/{key}"], value, rtol=rtol, atol=rtol * 1e-2, err_msg=key)
        np.testing.assert_array_equal(saved[f"rank1/{key}"], saved[f"rank0/{key}"], err_msg=f"ranks differ: {key}")
    if dtype == np.float64:  # the accuracy checks split over the ranks count the same images
        assert list(saved["train_acc"]) == one.train_acc_history and list(saved["val_acc"]) == one.val_acc_history
    assert str(saved["model_rng"]) == str(one.model.rng.bit_generator.state)


@needs_mpi
def test_with_batch_norm_the_ranks_average_their_running_statistics_and_stay_identical(tmp_path):
    saved = run_solver_on_two_ranks(tmp_path, np.float32, "bn")
    one = make_solver(np.float32, batchnorm=True).train()
    running = [key for key in one.model.state() if key.startswith("bn/")]
    assert running
    for key in one.model.state():
        np.testing.assert_array_equal(saved[f"rank1/{key}"], saved[f"rank0/{key}"], err_msg=f"ranks differ: {key}")
    # Per-step batch statistics stay local (each rank normalises its shard), so the run is not the
    # 1-process one; it stays close.
    np.testing.assert_allclose(saved["loss"], one.loss_history, rtol=0.05)


@needs_mpi
def test_a_batch_norm_run_on_two_ranks_writes_one_run_directory_and_prints_once(tmp_path):
    output = tmp_path / "runs"
    result = mpiexec(2, "-m", "convnet.train", write_config(tmp_path), "--output-dir", output, "--no-progress")
    assert result.returncode == 0, result.stderr
    run_dir = only_run_dir(output)
    assert sorted(path.name for path in run_dir.iterdir() if not path.name.startswith(".")) == [
        "accuracy.png", "best.npz", "checkpoint.npz", "config.yaml", "filters.png", "loss.png", "metrics.csv",
        "summary.json"]
    assert result.stdout.count("tiny: test accuracy") == 1 and result.stdout.count("(Epoch 2 / 2)") == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["ranks"] == 2
    if not os.environ.get("OMP_NUM_THREADS") and threads.get_num_threads() > 1:  # built with OpenMP
        assert summary["threads"] == max(1, threads.available_cpus() // 2)  # the two ranks share the cores


# A run that sends SIGINT to one rank right after that rank's step ITERATION (its gradients are
# combined by then): that rank's flag rides in the next step's Allreduce, so with several ranks
# every rank stops after step ITERATION + 1; one process stops after step ITERATION.
INTERRUPT_SCRIPT = """
import os, signal, sys
from convnet import solver, train

rank, iteration = int(sys.argv[1]), int(sys.argv[2])
step = solver.Solver.step

def step_then_signal(self):
    result = step(self)
    if self.iteration == iteration and self.communicator.rank == rank:
        os.kill(os.getpid(), signal.SIGINT)
    return result

solver.Solver.step = step_then_signal
sys.exit(train.main(sys.argv[3:]))
"""

# float64 and no batch norm: a run on any number of ranks is the 1-process run (to rounding).
PLAIN = {"model": {"type": "ConvNet", "dtype": "float64",
                   "layers": [{"type": "conv_relu", "filters": 4}, "pool", "pool", "pool", "global_avgpool"]},
         "data": {"num_training": 100}}  # batches of 32: 32, 32, 32 and 4


def final_state(run_dir):
    arrays = load_arrays(run_dir / "checkpoint.npz")
    return {key: value for key, value in arrays.items() if key.startswith(("param/", "optim/"))}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted 1-process run's final checkpoint."""
    directory = tmp_path_factory.mktemp("straight")
    assert train.main([str(write_config(directory, **PLAIN)), "--output-dir", str(directory / "runs"), "--quiet"]) == 0
    return final_state(only_run_dir(directory / "runs"))


@needs_mpi
@pytest.mark.parametrize("stopped_on, resumed_on", [(2, 1), (1, 2)])
def test_an_interrupted_run_resumes_on_another_number_of_ranks(tmp_path, straight, stopped_on, resumed_on):
    output = tmp_path / "runs"
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT)
    arguments = [script, stopped_on - 1, 5, write_config(tmp_path, **PLAIN), "--output-dir", output, "--no-progress"]
    stopped = mpiexec(2, *arguments) if stopped_on == 2 else subprocess.run(
        [sys.executable, *map(str, arguments)], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == train.EXIT_INTERRUPTED, stopped.stderr
    assert stopped.stderr.count("interrupted; checkpoint saved to") == 1
    run_dir = only_run_dir(output)
    _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    assert meta["iteration"] == (6 if stopped_on > 1 else 5)  # every rank stopped after the same step
    resume = ["-m", "convnet.train", "--resume", run_dir, "--no-progress"]
    resumed = mpiexec(2, *resume) if resumed_on == 2 else subprocess.run(
        [sys.executable, *map(str, resume)], capture_output=True, text=True, timeout=120, cwd=TESTS.parent)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("tiny: test accuracy") == 1
    state = final_state(run_dir)
    assert state.keys() == straight.keys()
    for key, value in straight.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-10, atol=1e-13, err_msg=key)


@needs_mpi
def test_an_mpiexec_of_another_mpi_library_is_refused_instead_of_training_copies(tmp_path):
    """Open MPI's mpiexec sets OMPI_COMM_WORLD_SIZE; mpi4py's MPICH then starts a world of one."""
    environ = {**os.environ, "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}
    result = subprocess.run([sys.executable, "-m", "convnet.train", str(write_config(tmp_path)), "--output-dir",
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=120, env=environ)
    assert result.returncode == train.EXIT_ERROR
    assert result.stderr.count("\n") == 1, result.stderr
    assert "the launcher started 2 processes (Open MPI, OMPI_COMM_WORLD_SIZE=2) but MPI sees 1" in result.stderr
    assert not (tmp_path / "runs").exists()



@needs_mpi
def test_a_failure_on_rank_0_alone_ends_every_rank_instead_of_leaving_them_waiting(tmp_path):
    """A run directory in use: only rank 0 takes its lock, so only rank 0 fails."""
    output = tmp_path / "runs"
    assert train.main([str(write_config(tmp_path)), "--output-dir", str(output), "--quiet"]) == 0
    run_dir = only_run_dir(output)
    with experiment.lock_run_dir(run_dir):  # another run trains there
        result = mpiexec(2, "-m", "convnet.train", "--resume", run_dir, "--set", "solver.num_epochs=3", timeout=60)
    assert result.returncode == train.EXIT_ERROR
    assert f"{run_dir} is in use" in result.stderr and "(rank 0 of 2; stopping every rank)" in result.stderr


@needs_mpi
def test_a_sigterm_to_mpiexec_stops_every_rank_and_rank_0_saves_a_checkpoint_that_resumes(tmp_path):
    """What a job scheduler sends: mpiexec passes it on to every rank."""
    output = tmp_path / "runs"
    config = write_config(tmp_path, solver={"num_epochs": 400})  # minutes of training, unless stopped
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("PMI_", "OMPI_", "PMIX_"))}
    launcher = subprocess.Popen([distributed.mpiexec_path(), "-n", "2", sys.executable, "-m", "convnet.train",
                                 str(config), "--output-dir", str(output), "--no-progress", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(output.glob("tiny/*/checkpoint.npz")):  # epoch 1 is done
            time.sleep(0.05)
        launcher.send_signal(signal.SIGTERM)
        _, err = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == train.EXIT_TERMINATED, err
    assert err.count("stopped by SIGTERM; checkpoint saved to") == 1
    run_dir = only_run_dir(output)
    _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    assert 1 <= meta["epoch"] < 400
    assert train.main(["--resume", str(run_dir), "--set", f"solver.num_epochs={meta['epoch'] + 1}", "--quiet"]) == 0


UNLIKE_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from convnet.distributed import DistributedError, communicator
from test_distributed import make_solver

comm = communicator("mpi")
solver = make_solver(np.float64, communicator=comm)
if comm.rank == 1:  # as if rank 1 had been started with another seed
    name = next(iter(solver.model.params))
    solver.model.params[name] = solver.model.params[name] + 1e-3
try:
    solver.train()
except DistributedError as exc:
    print(f"rank {{comm.rank}} at iteration {{solver.iteration}}: {{exc}}")
"""


@needs_mpi
def test_ranks_that_do_not_start_alike_are_refused_before_the_first_update(tmp_path):
    script = tmp_path / "unlike.py"
    script.write_text(UNLIKE_SCRIPT.format(tests=str(TESTS)))
    result = mpiexec(2, script)
    assert result.returncode == 0, result.stderr
    for rank in (0, 1):
        assert f"rank {rank} at iteration 0: the ranks' parameters differ" in result.stdout


# Batch norm in float64, on two ranks: 120 images in batches of 32 -> 4 steps an epoch, 8 in all.
BN = {"model": {"dtype": "float64"}}
BN_LOOKAHEAD = {**BN, "solver": {"lookahead": {"every": 2, "decay": 0.9, "power": 1}}}


def run_state(run_dir):
    """The final checkpoint's parameters, optimizer state, batch-norm statistics and lookahead average."""
    arrays = load_arrays(run_dir / "checkpoint.npz")
    return {key: value for key, value in arrays.items() if key.startswith(("param/", "optim/", "bn/", "lookahead/"))}


@pytest.fixture(scope="module")
def straight_on_two_ranks(tmp_path_factory):
    """{lookahead?: the uninterrupted 2-rank batch-norm run's final checkpoint}, run once each."""
    runs = {}

    def run(lookahead):
        if lookahead not in runs:
            directory = tmp_path_factory.mktemp("straight_bn")
            config = write_config(directory, **(BN_LOOKAHEAD if lookahead else BN))
            result = mpiexec(2, "-m", "convnet.train", config, "--output-dir", directory / "runs", "--quiet")
            assert result.returncode == 0, result.stderr
            runs[lookahead] = run_state(only_run_dir(directory / "runs"))
        return runs[lookahead]
    return run


@needs_mpi
@pytest.mark.parametrize("lookahead", [False, True], ids=["bn", "bn+lookahead"])
@pytest.mark.parametrize("signalled_at, resumed_on", [(5, 2), (7, 1)], ids=["mid-epoch", "after-the-last-step"])
def test_a_batch_norm_run_stopped_on_two_ranks_resumes_to_the_uninterrupted_run(tmp_path, straight_on_two_ranks,
                                                                               lookahead, signalled_at, resumed_on):
    """The checkpoint of a stop holds the ranks' averaged batch-norm statistics (the model's and the
    lookahead average's), not rank 0's. Stopped after step 6 (mid-epoch 2) the 2-rank resume trains on;
    stopped after step 8, the last, a 1-process resume only evaluates (a step on one process normalises
    the whole batch, not the ranks' shards, so only then is its result the 2-rank run's).

    Tolerance: averaging the statistics at the stop instead of at the end of the epoch only reorders
    float64 additions (the running averages are linear and the same on every rank, and train-mode batch
    norm never reads them), so rtol 1e-10 leaves room for rounding and none for rank 0's own statistics.
    """
    output = tmp_path / "runs"
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT)
    config = write_config(tmp_path, **(BN_LOOKAHEAD if lookahead else BN))
    stopped = mpiexec(2, script, 1, signalled_at, config, "--output-dir", output, "--no-progress")
    assert stopped.returncode == train.EXIT_INTERRUPTED, stopped.stderr
    run_dir = only_run_dir(output)
    _, meta = load_arrays_and_meta(run_dir / "checkpoint.npz")
    assert meta["iteration"] == signalled_at + 1
    resume = ["-m", "convnet.train", "--resume", run_dir, "--no-progress"]
    resumed = mpiexec(2, *resume) if resumed_on == 2 else subprocess.run(
        [sys.executable, *map(str, resume)], capture_output=True, text=True, timeout=120, cwd=TESTS.parent)
    assert resumed.returncode == 0, resumed.stderr
    state, straight = run_state(run_dir), straight_on_two_ranks(lookahead)
    assert state.keys() == straight.keys()
    assert any(key.startswith("bn/") for key in state)
    assert any(key.startswith("lookahead/bn/") for key in state) == lookahead
    for key, value in straight.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-10, atol=1e-13, err_msg=key)
    if lookahead:  # the last step set the model's state := the average, on every rank alike
        for key in (key for key in state if key.startswith("bn/")):
            np.testing.assert_allclose(state[f"lookahead/{key}"], state[key], rtol=1e-10, err_msg=key)
