"""convnet: readable, fast convolutional networks on the CPU.

Layers come as numpy references (:mod:`convnet.layers`, the ``*_naive`` functions in
:mod:`convnet.conv_layers`) and as fast Cython-backed twins (the public functions of
:mod:`convnet.conv_layers`).
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

#: Environment settings convnet makes for itself on import, unless already set.
#: The kernels' OpenMP threads and numpy's BLAS threads take turns on the same cores,
#: and each runtime by default keeps its idle threads spinning, which takes the cores
#: from the other one:
#:
#: - OMP_WAIT_POLICY: OpenMP threads spinning after each kernel made the BLAS products
#:   of a convolution up to 2x slower; PASSIVE lets them sleep at once, which costs little
#:   next to a kernel of milliseconds. Read when the OpenMP runtime loads, i.e. when the
#:   kernels are imported below.
#: - OPENBLAS_THREAD_TIMEOUT: OpenBLAS threads spin for 2**28 cycles (~0.1 s) after each
#:   product; the conv and batch-norm kernels that ran in that time measured 1.4-1.7x
#:   slower, and a training step ~15% slower. 20 (2**20 cycles, ~0.4 ms) still covers the
#:   gap between back-to-back products: with 4 (sleep at once), a loop of small products
#:   such as the naive reference convolution ran 2-3x slower, waking threads every call
#:   (up to ~0.4 ms per call on the 2-core test machine).
#:   OpenBLAS reads it when numpy is first imported: import convnet before numpy (or
#:   set it yourself) for it to count; ``blas_threads_sleep`` says whether it did.
ENVIRONMENT_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "20"}

#: Whether OpenBLAS will read an OPENBLAS_THREAD_TIMEOUT (convnet's or the user's): true
#: unless numpy was imported before convnet without one.
blas_threads_sleep = "OPENBLAS_THREAD_TIMEOUT" in _os.environ or "numpy" not in _sys.modules

for _name, _value in ENVIRONMENT_DEFAULTS.items():
    _os.environ.setdefault(_name, _value)

try:
    from convnet._kernels import batchnorm as _batchnorm  # noqa: F401
    from convnet._kernels import im2col as _im2col  # noqa: F401
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

from convnet.allocator import tune_malloc as _tune_malloc  # noqa: E402
from convnet.threads import get_num_threads, set_num_threads  # noqa: E402

#: Whether convnet.allocator's glibc settings are in effect (opt-in: CONVNET_MALLOC_TUNING=1).
malloc_tuned = _os.environ.get("CONVNET_MALLOC_TUNING") == "1" and _tune_malloc()

from convnet.inference import load_model  # noqa: E402

__all__ = ["ENVIRONMENT_DEFAULTS", "__version__", "blas_threads_sleep", "get_num_threads", "load_model",
           "set_num_threads"]
