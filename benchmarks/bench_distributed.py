"""Images per second of data-parallel training: one process with T threads against K MPI
ranks with T / K threads each, on the same cores, and the Allreduce's share of a step.

    python benchmarks/bench_distributed.py                       # 1 x 2 threads vs 2 ranks x 1 thread
    python benchmarks/bench_distributed.py --ranks 2 --threads 2 --steps 10 --rounds 3

A step is Solver.step() of the cifar10_convnet experiment's model (its block list, read from
experiments/cifar10_convnet.yaml) at batch 128 on random float32 CIFAR-shaped images, with its
augmentation (crops and flips): draw the batch, augment it, forward and backward (each rank its
shard), the Allreduce of the gradients, the update. Each configuration runs in worker processes
of its own (benchmarks/timing.py says why), alternating over --rounds rounds; reported are the
median step time, images/s, the ratio of the two in the same run, and for the ranks the median
time inside the step's Allreduce (which includes waiting for the slower rank) and the time of
the Allreduce alone on the same buffer (after a barrier: the transfer itself). Needs mpi4py and
an mpiexec of its library (pip install "convnet[mpi]").
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import timing

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "experiments" / "cifar10_convnet.yaml"
WARMUP_STEPS = 2


def worker(arguments):
    """Time ``steps`` Solver steps; print one JSON line (from rank 0 under MPI)."""
    import numpy as np
    import yaml

    import convnet
    from convnet.augment import augment_batch
    from convnet.distributed import communicator
    from convnet.models import ConvNet
    from convnet.solver import Solver

    convnet.set_num_threads(arguments.threads)
    comm = communicator("mpi" if arguments.mpi else "off")
    config = yaml.safe_load(CONFIG.read_text())
    rng = np.random.default_rng(0)
    count = arguments.batch_size * (WARMUP_STEPS + arguments.steps)
    data = {"X_train": rng.standard_normal((count, 3, 32, 32)).astype(np.float32),
            "y_train": rng.integers(10, size=count)}
    model = ConvNet(config["model"]["layers"], input_dim=(3, 32, 32), num_classes=10, reg=config["model"]["reg"],
                    seed=0)
    solver = Solver(model, data, update_rule="nesterov", optim_config={"learning_rate": 0.01, "momentum": 0.9},
                    batch_size=arguments.batch_size, num_epochs=1, seed=0, verbose=False, communicator=comm,
                    augment=lambda X, generator: augment_batch(X, generator, crop_padding=4, flip=True))
    inside = []
    if arguments.mpi:
        comm.comm = TimedAllreduce(comm.comm, inside)
    times = timing.time_calls(solver.step, arguments.steps, WARMUP_STEPS)
    result = {"ranks": comm.size, "threads": convnet.get_num_threads(), "step_s": statistics.median(times)}
    if arguments.mpi:
        result["allreduce_in_step_s"] = statistics.median(inside[-arguments.steps:])  # the steps timed
        buffer = comm._buffer[0]
        alone = []
        for _ in range(arguments.steps):
            comm.comm.Barrier()
            started = time.perf_counter()
            comm.comm.comm.Allreduce(comm._mpi.IN_PLACE, buffer, op=comm._mpi.SUM)
            alone.append(time.perf_counter() - started)
        result["allreduce_alone_s"] = statistics.median(alone)
        result["buffer_mb"] = buffer.nbytes / 1e6
    if comm.is_root:
        print(json.dumps(result), flush=True)


class TimedAllreduce:
    """An mpi4py communicator whose Allreduce calls append their seconds to ``times``."""

    def __init__(self, comm, times):
        self.comm, self.times = comm, times

    def Allreduce(self, *args, **kwargs):  # noqa: N802 - mpi4py's name
        started = time.perf_counter()
        self.comm.Allreduce(*args, **kwargs)
        self.times.append(time.perf_counter() - started)

    def __getattr__(self, name):
        return getattr(self.comm, name)


def run(command):
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")][0]


def cpu_line():
    return f"CPU: {timing.cpu_model()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2, help="MPI ranks of the data-parallel run")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one process (each rank: this / ranks)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per worker")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two workers")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mpi", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        return worker(arguments)

    from convnet.distributed import mpiexec_path

    script, per_rank = os.path.abspath(__file__), max(1, arguments.threads // arguments.ranks)
    common = ["--worker", "--batch-size", str(arguments.batch_size), "--steps", str(arguments.steps)]
    one = [sys.executable, script, *common, "--threads", str(arguments.threads)]
    ranks = [mpiexec_path(), "-n", str(arguments.ranks), sys.executable, script, *common, "--mpi",
             "--threads", str(per_rank)]
    results = {"one": [], "ranks": []}
    for _ in range(arguments.rounds):
        results["one"].append(run(one))
        results["ranks"].append(run(ranks))
    print(cpu_line())
    print(f"cifar10_convnet model, batch {arguments.batch_size}, float32, {arguments.steps} steps x "
          f"{arguments.rounds} rounds (medians)")
    step_one = statistics.median(r["step_s"] for r in results["one"])
    step_ranks = statistics.median(r["step_s"] for r in results["ranks"])
    inside = statistics.median(r["allreduce_in_step_s"] for r in results["ranks"])
    alone = statistics.median(r["allreduce_alone_s"] for r in results["ranks"])
    size = results["ranks"][0]["buffer_mb"]
    print(f"1 process x {arguments.threads} threads: {step_one * 1e3:7.1f} ms/step, "
          f"{arguments.batch_size / step_one:6.0f} images/s")
    print(f"{arguments.ranks} ranks x {per_rank} thread(s):   {step_ranks * 1e3:7.1f} ms/step, "
          f"{arguments.batch_size / step_ranks:6.0f} images/s  ({step_one / step_ranks:.2f}x the 1-process rate)")
    print(f"Allreduce of the {size:.1f} MB buffer: {inside * 1e3:.1f} ms inside a step ({inside / step_ranks:.1%} of "
          f"it, waiting for the slower rank included), {alone * 1e3:.2f} ms alone")


if __name__ == "__main__":
    main()
