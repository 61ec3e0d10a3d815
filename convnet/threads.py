"""How many threads convnet's kernels and BLAS may use.

The Cython kernels pass this count to every OpenMP parallel loop explicitly, so
it holds whichever Python thread calls them. The default is

* OMP_NUM_THREADS, when it is set (as the OpenMP runtime reads it);
* otherwise the CPUs this process may really use: the CPU affinity mask
  (``taskset``, ``docker --cpuset-cpus``), capped by the container's CPU quota
  (``docker --cpus``, Kubernetes CPU limits: cgroup v2 ``cpu.max``, cgroup v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up. Under ``--cpus=2``
  on a 64-core host that is 2, not 64, and numpy's BLAS is capped to the same
  count on import.

:func:`set_num_threads` overrides the default for the kernels and BLAS alike.
:func:`l2_cache_bytes` reads the other machine resource the kernels size their work to.
"""

import contextlib
import functools
import math
import os
import threading
from pathlib import Path

import numpy  # noqa: F401  - loads BLAS, so that the cap below reaches it
from threadpoolctl import ThreadpoolController, threadpool_limits

from convnet._kernels import conv as _conv  # noqa: F401  - loads the BLAS the conv kernels call (scipy's)
from convnet._kernels import threads as _omp

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

#: Variables through which a user already chose BLAS's thread count; convnet then leaves it alone.
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def _read_text(path):
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_words(path):
    text = _read_text(path)
    return None if text is None else text.split()


def _quota_v2(directory):
    """CPUs allowed by ``cpu.max`` ("<quota> <period>", or "max <period>") in directory, or None."""
    words = _read_words(directory / "cpu.max")
    if not words or words[0] == "max":
        return None
    try:
        quota, period = float(words[0]), float(words[1]) if len(words) > 1 else 100000.0
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(directory):
    """CPUs allowed by ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in directory (-1: none), or None."""
    quota, period = _read_words(directory / "cpu.cfs_quota_us"), _read_words(directory / "cpu.cfs_period_us")
    if not quota or not period:
        return None
    try:
        quota, period = float(quota[0]), float(period[0])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _tightest_along(mount, cgroup_path, read_quota):
    """The smallest quota on the cgroup at mount/cgroup_path or any of its ancestors up to mount.

    Inside a container the mount often shows the container's own cgroup while
    /proc/self/cgroup names the host's path to it; the parts of that path that do
    not exist under the mount are then skipped, and the mount itself still counts.
    """
    quotas = []
    directory = mount
    for part in [""] + [p for p in cgroup_path.split("/") if p]:
        directory = directory / part if part else directory
        if not directory.is_dir():
            break
        quota = read_quota(directory)
        if quota is not None:
            quotas.append(quota)
    return min(quotas, default=None)


def cgroup_cpu_quota(cgroup_root=None, proc_self_cgroup=None):
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    proc_self_cgroup lists "<id>:<controllers>:<path>" lines: "0::<path>" for the
    cgroup v2 hierarchy, mounted at cgroup_root, and for cgroup v1 a line whose
    controllers include "cpu", mounted at cgroup_root/<controllers> (e.g.
    "cpu,cpuacct") or cgroup_root/cpu. Unreadable or malformed files count as no quota.
    The paths default to CGROUP_ROOT and PROC_SELF_CGROUP.
    """
    lines = (_read_text(proc_self_cgroup or PROC_SELF_CGROUP) or "").splitlines()
    cgroup_root = Path(cgroup_root or CGROUP_ROOT)
    quotas = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, cgroup_path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            quotas.append(_tightest_along(cgroup_root, cgroup_path, _quota_v2))
        elif "cpu" in controllers.split(","):
            for mount in (cgroup_root / controllers, cgroup_root / "cpu"):
                if mount.is_dir():
                    quotas.append(_tightest_along(mount, cgroup_path, _quota_v1))
                    break
    return min((q for q in quotas if q is not None), default=None)


def available_cpus(affinity=None, cgroup_root=None, proc_self_cgroup=None):
    """How many CPUs this process can keep busy: the affinity mask's size, capped by the
    cgroup CPU quota rounded up (a quota of 1.5 CPUs gives 2), at least 1.

    affinity: a CPU count or set; by default this process's mask (os.sched_getaffinity),
    or os.cpu_count() where there is no such call. cgroup_root, proc_self_cgroup: as in
    :func:`cgroup_cpu_quota`.
    """
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = affinity if isinstance(affinity, int) else len(affinity)
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


CPU_CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def l2_cache_bytes(cache_dir=None, default=2**20):
    """One core's level-2 cache in bytes, as Linux's sysfs gives it (index*/level and size, e.g.
    "2048K"), or ``default`` where it does not. The fast convolution sizes its tasks to it."""
    for index in sorted(Path(cache_dir or CPU_CACHE_DIR).glob("index*")):
        level, size = _read_words(index / "level"), _read_words(index / "size")
        if level == ["2"] and size and size[0][:-1].isdigit() and size[0][-1] in SIZE_UNITS:
            return int(size[0][:-1]) * SIZE_UNITS[size[0][-1]]
    return default


def default_num_threads(processes=1):
    """The thread count convnet starts with (see the module docstring); 1 without OpenMP.

    ``processes``: how many processes share this machine's CPUs (MPI ranks on one node);
    each gets an equal part of them, at least 1 (OMP_NUM_THREADS, when set, still decides).
    """
    if not _omp.openmp_enabled():
        return 1
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, _omp.default_num_threads())
    return max(1, available_cpus() // processes)


def _limit_blas(n):
    threadpool_limits(limits=n, user_api="blas")


@functools.cache
def _blas_libraries():
    """threadpoolctl's controllers of every BLAS library loaded (numpy's, scipy's; found once)."""
    return [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]


_single_threaded = {"depth": 0, "before": []}  # how many callers are inside single_threaded_blas()
_single_threaded_lock = threading.Lock()


@contextlib.contextmanager
def single_threaded_blas():
    """Within the block, every BLAS library runs each call on the calling thread alone.

    For kernels that call BLAS from threads of their own (convnet._kernels.conv): a BLAS
    that started its own threads there would make the cores wait on each other. The
    thread counts in force before are restored when the last of the Python threads inside
    such a block leaves it (the setting is global to each library).
    """
    with _single_threaded_lock:
        if _single_threaded["depth"] == 0:
            libraries = _blas_libraries()
            _single_threaded["before"] = [lib.get_num_threads() for lib in libraries]
            for lib in libraries:
                lib.set_num_threads(1)
        _single_threaded["depth"] += 1
    try:
        yield
    finally:
        with _single_threaded_lock:
            _single_threaded["depth"] -= 1
            if _single_threaded["depth"] == 0:
                for lib, count in zip(_blas_libraries(), _single_threaded["before"]):
                    lib.set_num_threads(count)


def set_num_threads(n):
    """Use ``n`` threads (n >= 1) in the kernels and in BLAS from now on."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects an integer n >= 1, got {n!r}")
    _num_threads = n
    _limit_blas(n)


def get_num_threads():
    """The number of threads the kernels use (1 when built without OpenMP)."""
    return _num_threads if _omp.openmp_enabled() else 1


def _cap_blas_to_available_cpus():
    """BLAS counts every core it sees (or the affinity mask), not a quota: cap it to
    available_cpus() too, unless the user chose its thread count. Only when that is fewer
    than the cores, as the call scans the loaded libraries."""
    if any(os.environ.get(name) for name in BLAS_THREAD_VARIABLES):
        return
    cpus = available_cpus()
    if cpus < (os.cpu_count() or 1):
        _limit_blas(cpus)


_num_threads = default_num_threads()
_cap_blas_to_available_cpus()
