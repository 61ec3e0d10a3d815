"""What the benchmarks share: timing a callable, and running one implementation per
worker process.

Why worker processes: idle OpenMP and OpenBLAS threads spin for a while after each
call, and two libraries sharing one process (and a few cores) slow each other down by
up to 2x, which would make any ratio meaningless. A process also has one OpenMP runtime,
set up by the first library that loads it (PyTorch's wheel and convnet's kernels share
``libgomp.so.1``), so each implementation runs in a process of its own with its own
defaults: a PyTorch worker imports torch first, a convnet worker imports only convnet.

A worker prints one JSON object per line on stdout; :func:`run_worker` returns them.
"""

import contextlib
import json
import os
import platform
import subprocess
import sys
import time


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), or what the platform module knows of it."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def time_calls(fn, repeats, warmup):
    """Seconds of each of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def convnet_memory(reuse):
    """Where convnet's timed calls allocate: inside convnet.memory.reusing_memory(), as the
    Solver trains, when ``reuse``; else plain numpy allocation (fresh pages fault on first touch)."""
    from convnet.memory import reusing_memory

    return reusing_memory() if reuse else contextlib.nullcontext()


def run_worker(script, arguments, convnet_first=False):
    """Run ``python script *arguments`` in the start environment; return its JSON lines as dicts.

    ``convnet_first``: import convnet before the script runs (and so before numpy), to
    check that the import order does not change convnet's speed. A failing worker raises
    RuntimeError with the end of its stderr.
    """
    script = os.path.abspath(script)
    if convnet_first:
        launch = (f"import sys, runpy, convnet; sys.argv = {[script, *arguments]!r}; "
                  f"sys.path.insert(0, {os.path.dirname(script)!r}); runpy.run_path(sys.argv[0], run_name='__main__')")
        command = [sys.executable, "-c", launch]
    else:
        command = [sys.executable, script, *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {' '.join(arguments)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def torch_version():
    """PyTorch's version string if this interpreter can import torch, else None."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True, check=False)
    return probe.stdout.strip() if probe.returncode == 0 else None
