"""The default thread count: OMP_NUM_THREADS, else the affinity mask capped by the cgroup CPU quota."""

import json
import os
import subprocess
import sys

import pytest

import convnet
from convnet import threads


def fake_cgroup(tmp_path, proc_lines, files):
    """A fake /sys/fs/cgroup under tmp_path/"cgroup" holding ``files`` ({relative path: text}),
    and a fake /proc/self/cgroup holding ``proc_lines``; returns both paths."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("".join(line + "\n" for line in proc_lines))
    return root, proc


V1_LINES = ["4:memory:/", "3:cpu,cpuacct:/", "0::/"]


@pytest.mark.parametrize(
    "proc_lines, files, affinity, expected",
    [
        # cgroup v2: docker --cpus=2 on a 64-core host
        (["0::/"], {"cpu.max": "200000 100000\n"}, 64, 2),
        # a fractional quota rounds up: 1.5 CPUs can keep 2 threads busy half the time
        (["0::/"], {"cpu.max": "150000 100000\n"}, 64, 2),
        (["0::/"], {"cpu.max": "50000 100000\n"}, 64, 1),
        # no quota: the affinity mask decides
        (["0::/"], {"cpu.max": "max 100000\n"}, 6, 6),
        ([], {}, 6, 6),
        # the affinity mask is smaller than the quota
        (["0::/"], {"cpu.max": "800000 100000\n"}, 3, 3),
        # the quota sits on an ancestor of the process's cgroup (systemd slices, Kubernetes pods)
        (["0::/kubepods/pod1/c1"], {"kubepods/cpu.max": "300000 100000", "kubepods/pod1/c1/cpu.max": "max 100000"},
         64, 3),
        # the process's path does not exist under the mount (a container without a cgroup namespace):
        # the mount is the container's own cgroup
        (["0::/docker/abc"], {"cpu.max": "200000 100000"}, 64, 2),
        # cgroup v1, controllers mounted together or as "cpu"
        (V1_LINES, {"cpu,cpuacct/cpu.cfs_quota_us": "400000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 64, 4),
        (["1:cpu:/", "2:cpuacct:/"], {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}, 64, 1),
        (V1_LINES, {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 64, 64),
        # damaged files count as no quota, never as an error
        (["0::/"], {"cpu.max": "lots 100000"}, 8, 8),
        (["0::/"], {"cpu.max": ""}, 8, 8),
        (V1_LINES, {"cpu,cpuacct/cpu.cfs_quota_us": "200000"}, 8, 8),
    ],
    ids=["v2-2cpus", "v2-1.5", "v2-0.5", "v2-max", "no-cgroup", "affinity-smaller", "v2-ancestor",
         "v2-container-path", "v1-joint", "v1-split", "v1-unlimited", "v2-garbage", "v2-empty", "v1-no-period"],
)
def test_available_cpus_follows_affinity_and_quota(tmp_path, proc_lines, files, affinity, expected):
    root, proc = fake_cgroup(tmp_path, proc_lines, files)
    assert threads.available_cpus(affinity, cgroup_root=root, proc_self_cgroup=proc) == expected


def test_available_cpus_counts_an_affinity_set(tmp_path):
    root, proc = fake_cgroup(tmp_path, ["0::/"], {"cpu.max": "max 100000"})
    assert threads.available_cpus({0, 5, 7}, cgroup_root=root, proc_self_cgroup=proc) == 3


def test_the_default_obeys_a_quota_unless_omp_num_threads_is_set(tmp_path, monkeypatch):
    if not convnet._threads.openmp_enabled():
        pytest.skip("built without OpenMP: the kernels always run one thread")
    root, proc = fake_cgroup(tmp_path, ["0::/"], {"cpu.max": "100000 100000"})
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", proc)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.default_num_threads() == 1
    # OpenMP reads OMP_NUM_THREADS when it loads; convnet then takes OpenMP's count, quota or not
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setattr(threads, "_omp", FakeOpenMP(max_threads=5))
    assert threads.default_num_threads() == 5


class FakeOpenMP:
    """Stands in for convnet._kernels.threads: an OpenMP runtime that read OMP_NUM_THREADS."""

    def __init__(self, max_threads):
        self.max_threads = max_threads

    def openmp_enabled(self):
        return True

    def default_num_threads(self):
        return self.max_threads


def blas_thread_counts():
    from threadpoolctl import threadpool_info

    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_blas_is_capped_to_the_quota_unless_the_user_chose(tmp_path, monkeypatch, restore_threads):
    if (os.cpu_count() or 1) < 2 or not blas_thread_counts():
        pytest.skip("needs 2 cores and a BLAS that threadpoolctl can see")
    root, proc = fake_cgroup(tmp_path, ["0::/"], {"cpu.max": "100000 100000"})
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_SELF_CGROUP", proc)
    for name in threads.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    convnet.set_num_threads(2)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    threads._cap_blas_to_available_cpus()
    assert blas_thread_counts() == [2] * len(blas_thread_counts())
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    threads._cap_blas_to_available_cpus()
    assert blas_thread_counts() == [1] * len(blas_thread_counts())


def _counts_in_child(env_update, cpus=None):
    """(convnet's thread count, BLAS's thread counts) in a fresh interpreter, optionally pinned to ``cpus``."""
    code = (
        "import json, os, sys\n"
        "cpus = json.loads(sys.argv[1])\n"
        "if cpus is not None: os.sched_setaffinity(0, cpus)\n"
        "import convnet, threadpoolctl\n"
        "blas = [p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas']\n"
        "print(json.dumps([convnet.get_num_threads(), blas]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in threads.BLAS_THREAD_VARIABLES}
    env.update(env_update)
    result = subprocess.run([sys.executable, "-c", code, json.dumps(cpus)], env=env, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def test_a_fresh_interpreter_starts_with_the_available_cpus():
    expected = threads.available_cpus() if convnet._threads.openmp_enabled() else 1
    assert _counts_in_child({})[0] == expected


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_a_process_pinned_to_one_cpu_uses_one_thread_in_kernels_and_blas():
    count, blas = _counts_in_child({}, cpus=[min(os.sched_getaffinity(0))])
    assert count == 1
    assert all(n == 1 for n in blas)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_omp_num_threads_wins_over_the_affinity_mask():
    if not convnet._threads.openmp_enabled():
        pytest.skip("built without OpenMP: the kernels always run one thread")
    count, _ = _counts_in_child({"OMP_NUM_THREADS": "3"}, cpus=[min(os.sched_getaffinity(0))])
    assert count == 3


def test_set_num_threads_changes_the_count_and_blas(restore_threads):
    from threadpoolctl import threadpool_info

    if not convnet._threads.openmp_enabled():
        pytest.skip("built without OpenMP: the kernels always run one thread")
    for n in (1, 3):
        convnet.set_num_threads(n)
        assert convnet.get_num_threads() == n
        assert all(p["num_threads"] == n for p in threadpool_info() if p["user_api"] == "blas")


@pytest.fixture
def restore_threads():
    before = convnet.get_num_threads()
    yield
    convnet.set_num_threads(before)


def _blas_counts():
    from threadpoolctl import threadpool_info

    return {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_single_threaded_blas_holds_every_blas_at_one_and_restores(restore_threads):
    convnet.set_num_threads(2)
    before = _blas_counts()
    assert before and set(before.values()) == {2}
    with threads.single_threaded_blas():
        assert set(_blas_counts().values()) == {1}
    assert _blas_counts() == before
    with pytest.raises(RuntimeError, match="inside"):
        with threads.single_threaded_blas():
            raise RuntimeError("inside")
    assert _blas_counts() == before



def test_single_threaded_blas_restores_only_when_the_last_caller_leaves(restore_threads):
    """Two Python threads convolving at once: the first to leave must not give BLAS its threads back."""
    convnet.set_num_threads(2)
    before = _blas_counts()
    with threads.single_threaded_blas():
        with threads.single_threaded_blas():  # as a second Python thread would
            pass
        assert set(_blas_counts().values()) == {1}
    assert _blas_counts() == before


@pytest.mark.parametrize("caches, expected", [
    ({"index0": ("1", "48K"), "index2": ("2", "2048K"), "index3": ("3", "480M")}, 2 * 2**20),
    ({"index2": ("2", "1M")}, 2**20),
    ({"index0": ("1", "32K")}, 12345),  # no level 2: the default
    ({"index2": ("2", "lots")}, 12345),  # unreadable: the default
    ({}, 12345),
])
def test_l2_cache_bytes_reads_sysfs(tmp_path, caches, expected):
    for index, (level, size) in caches.items():
        (tmp_path / index).mkdir()
        (tmp_path / index / "level").write_text(level + "\n")
        (tmp_path / index / "size").write_text(size + "\n")
    assert threads.l2_cache_bytes(tmp_path, default=12345) == expected
