"""convnet: readable, fast convolutional networks on the CPU.

Layers come as numpy references (:mod:`convnet.layers`, the ``*_naive`` functions in
:mod:`convnet.conv_layers`) and as fast Cython-backed twins (the public functions of
:mod:`convnet.conv_layers`).
"""

__version__ = "0.1.0"

import contextlib as _contextlib
import os as _os

#: Settings convnet's OpenMP runtime starts with, unless the variable is already set.
#:
#: - OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep at once instead of spinning. On a
#:   busy machine (more runnable threads than cores) a spinning thread takes the core from
#:   the one it waits for: a training step ran 1.4-2.3x slower without it
#:   (docs/performance.md).
#:
#: The runtime reads them once, when the kernels below load it, and they are in ``os.environ``
#: only for that moment: afterwards the environment is as it was, and child processes start
#: with their own defaults. numpy loads no OpenMP runtime, so importing numpy first changes
#: nothing. A process has one OpenMP runtime (``libgomp.so.1``, shared with PyTorch's wheel),
#: set up by whichever library loads it first: if torch is imported before convnet, convnet's
#: threads wait as PyTorch's do. OpenBLAS's own threads do not matter: the convolutions call
#: BLAS single-threaded from convnet's OpenMP threads (convnet.threads.single_threaded_blas).
ENVIRONMENT_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


@_contextlib.contextmanager
def _defaults_while_the_kernels_load():
    added = [name for name in ENVIRONMENT_DEFAULTS if name not in _os.environ]
    _os.environ.update({name: ENVIRONMENT_DEFAULTS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            del _os.environ[name]


try:
    from convnet._kernels import cpu as _cpu
except ImportError:  # pragma: no cover - the same message as for the other kernels, below
    _cpu = None
if _cpu is not None and not _cpu.cpu_runs_kernels():
    raise ImportError(
        f"convnet's kernels were compiled for {_cpu.kernel_isa()} (on another machine), which this CPU "
        "lacks. Rebuild them here (python3 -m pip install -e .), or build portable kernels with "
        "CONVNET_PORTABLE=1 set."
    )

try:
    with _defaults_while_the_kernels_load():
        from convnet._kernels import batchnorm as _batchnorm  # noqa: F401
        from convnet._kernels import conv as _conv  # noqa: F401
        from convnet._kernels import pooling as _pooling  # noqa: F401
        from convnet._kernels import threads as _threads  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by hand, not in an installed tree
    raise ImportError(
        "convnet's compiled Cython kernels (convnet/_kernels/*.so) were not found next to "
        f"{__file__}. Build them from the source checkout with\n"
        "    python3 -m pip install -e .\n"
        "(or `python3 setup.py build_ext --inplace`). If you installed with `pip install .`, "
        "run Python from outside the source directory so the installed copy is imported."
    ) from exc

from convnet.threads import get_num_threads, set_num_threads  # noqa: E402

from convnet.inference import load_model  # noqa: E402

__all__ = ["ENVIRONMENT_DEFAULTS", "__version__", "get_num_threads", "load_model",
           "set_num_threads"]
