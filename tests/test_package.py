"""Packaging: the import guard, the public surface and the CS231n aliases."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy

import convnet
from convnet import conv_layers


def _import_a_copy(tmp_path, ignore, extra_files=()):
    """The result of `import convnet` from a copy of the package without the files ``ignore`` matches
    (shutil patterns) and with ``extra_files`` ((path inside the package, text) pairs) added."""
    source = Path(convnet.__file__).parent
    copy = tmp_path / "convnet"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", *ignore))
    for relative, text in extra_files:
        (copy / relative).write_text(text)
    # -S: no .pth files, so an editable install's import hook cannot hand out the real kernels;
    # the dependencies stay importable through PYTHONPATH.
    site_packages = str(Path(numpy.__file__).parents[1])
    return subprocess.run(
        [sys.executable, "-S", "-c", "import convnet"], cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": site_packages},
    )


def test_import_without_compiled_kernels_explains_how_to_build(tmp_path):
    """A source tree without the .so files must say how to build them, not 'No module named'."""
    result = _import_a_copy(tmp_path, ["*.so", "*.pyd"])
    assert result.returncode != 0
    assert "compiled Cython kernels" in result.stderr
    assert "pip install -e ." in result.stderr


def test_kernels_built_for_instructions_this_cpu_lacks_refuse_to_import(tmp_path):
    """Kernels compiled with AVX2 on another machine must fail with an error, not an illegal instruction."""
    lacking = "def kernel_isa():\n    return 'avx2+fma'\n\n\ndef cpu_runs_kernels():\n    return False\n"
    result = _import_a_copy(tmp_path, ["cpu.*.so", "cpu.*.pyd"], [("_kernels/cpu.py", lacking)])
    assert result.returncode != 0
    assert "compiled for avx2+fma" in result.stderr
    assert "CONVNET_PORTABLE=1" in result.stderr


def test_this_cpu_runs_the_kernels_it_built():
    from convnet._kernels import cpu

    assert cpu.kernel_isa() in ("avx2+fma", "baseline")
    assert cpu.cpu_runs_kernels()


def test_cs231n_aliases_point_at_the_fast_layers():
    assert conv_layers.conv_forward_fast is conv_layers.conv_forward
    assert conv_layers.conv_backward_fast is conv_layers.conv_backward
    assert conv_layers.max_pool_forward_fast is conv_layers.max_pool_forward
    assert conv_layers.max_pool_backward_fast is conv_layers.max_pool_backward
    from convnet.conv_layers import spatial_batchnorm_backward, spatial_batchnorm_forward  # noqa: F401


def _thread_settings_in_child(code, env_update):
    """What ``code`` prints in a fresh interpreter whose environment lacks the thread settings,
    and the wait policies its OpenMP runtime reports when it starts (OMP_DISPLAY_ENV)."""
    env = {k: v for k, v in os.environ.items() if k not in convnet.ENVIRONMENT_DEFAULTS}
    env.update(env_update, OMP_DISPLAY_ENV="TRUE")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return result.stdout.split(), re.findall(r"OMP_WAIT_POLICY = '(\w+)'", result.stderr)


IMPORT_AND_REPORT = ("import os, convnet; "
                     "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")


def test_import_starts_the_kernel_threads_passive_and_leaves_the_environment_as_it_was():
    passive = convnet.ENVIRONMENT_DEFAULTS["OMP_WAIT_POLICY"]
    assert _thread_settings_in_child(IMPORT_AND_REPORT, {}) == (["None", "None"], [passive])


def test_import_keeps_the_users_own_thread_settings():
    settings = {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "12"}
    assert _thread_settings_in_child("import numpy; " + IMPORT_AND_REPORT, settings) == (["ACTIVE", "12"], ["ACTIVE"])


def test_import_after_numpy_starts_the_kernel_threads_the_same_way():
    assert _thread_settings_in_child("import numpy; " + IMPORT_AND_REPORT, {}) == (["None", "None"], ["PASSIVE"])
