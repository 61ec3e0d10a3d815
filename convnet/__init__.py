"""convnet: readable, fast convolutional networks on the CPU.

Layers come as numpy references (:mod:`convnet.layers`, the ``*_naive`` functions in
:mod:`convnet.conv_layers`) and as fast Cython-backed twins (the public functions of
:mod:`convnet.conv_layers`).
"""

__version__ = "0.1.0"

import os as _os

# The kernels' OpenMP threads and numpy's BLAS threads take turns on the same cores.
# OpenMP's default (spin-waiting after each parallel loop) steals those cores from BLAS
# and made convolutions up to 2x slower; sleeping threads cost only microseconds to wake.
# It must be set before the OpenMP runtime loads, i.e. before the kernels are imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

__all__ = ["__version__", "get_num_threads", "set_num_threads"]
