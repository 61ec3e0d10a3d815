"""Packaging: the import guard, the public surface and the CS231n aliases."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy

import convnet
from convnet import conv_layers


def test_import_without_compiled_kernels_explains_how_to_build(tmp_path):
    """A source tree without the .so files must say how to build them, not 'No module named'."""
    source = Path(convnet.__file__).parent
    copy = tmp_path / "convnet"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    # -S: no .pth files, so an editable install's import hook cannot hand out the real kernels;
    # the dependencies stay importable through PYTHONPATH.
    site_packages = str(Path(numpy.__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import convnet"], cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": site_packages},
    )
    assert result.returncode != 0
    assert "compiled Cython kernels" in result.stderr
    assert "pip install -e ." in result.stderr


def test_cs231n_aliases_point_at_the_fast_layers():
    assert conv_layers.conv_forward_fast is conv_layers.conv_forward
    assert conv_layers.conv_backward_fast is conv_layers.conv_backward
    assert conv_layers.max_pool_forward_fast is conv_layers.max_pool_forward
    assert conv_layers.max_pool_backward_fast is conv_layers.max_pool_backward
    from convnet.conv_layers import spatial_batchnorm_backward, spatial_batchnorm_forward  # noqa: F401


def _thread_settings_in_child(code, env_update):
    """What ``code`` prints in a fresh interpreter whose environment lacks the thread settings."""
    env = {k: v for k, v in os.environ.items() if k not in convnet.ENVIRONMENT_DEFAULTS}
    env.update(env_update)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return result.stdout.split()


IMPORT_AND_REPORT = "import os, convnet; print(os.environ['OMP_WAIT_POLICY'], os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"


def test_import_sets_the_thread_waiting_default_and_no_blas_setting():
    assert _thread_settings_in_child(IMPORT_AND_REPORT, {}) == [convnet.ENVIRONMENT_DEFAULTS["OMP_WAIT_POLICY"], "None"]


def test_import_keeps_the_users_own_thread_settings():
    settings = {"OMP_WAIT_POLICY": "ACTIVE", "OPENBLAS_THREAD_TIMEOUT": "12"}
    assert _thread_settings_in_child("import numpy; " + IMPORT_AND_REPORT, settings) == ["ACTIVE", "12"]


def test_import_after_numpy_sets_the_same_default():
    assert _thread_settings_in_child("import numpy; " + IMPORT_AND_REPORT, {}) == ["PASSIVE", "None"]
