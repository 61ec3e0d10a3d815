"""Build script for convnet's Cython kernels (convnet/_kernels/*.pyx).

Metadata and dependencies live in pyproject.toml; this file only describes the
extension modules and how to compile them:

* language level 3, -O3, numpy's headers;
* bounds and wraparound checks off, unless CONVNET_DEBUG_KERNELS=1 is set in
  the environment at build time (then every memoryview access is checked);
* OpenMP when the compiler accepts it, otherwise a serial build and a warning.
"""

import os
import sys
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = Path("convnet") / "_kernels"
DEBUG_KERNELS = os.environ.get("CONVNET_DEBUG_KERNELS", "") not in ("", "0")

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
}
"""


def openmp_flags_for(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or None if unsupported."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe_openmp.c"
        source.write_text(OPENMP_PROBE)
        for compile_args, link_args in candidates:
            try:
                objects = compiler.compile([str(source)], output_dir=tmp, extra_postargs=compile_args)
                compiler.link_executable(objects, "probe_openmp", output_dir=tmp, extra_postargs=link_args)
            except Exception:  # any compiler or linker failure means "not this flag set"
                continue
            return compile_args, link_args
    return None


class BuildKernels(build_ext):
    """build_ext that adds OpenMP flags when the compiler supports them."""

    def build_extensions(self):
        flags = openmp_flags_for(self.compiler)
        if flags is None:
            self.warn(
                "convnet: the C compiler does not accept OpenMP; building serial kernels. "
                "convnet.set_num_threads() will then only affect BLAS."
            )
        for ext in self.extensions:
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
        super().build_extensions()


def kernel_extensions():
    optimise = ["/O2"] if sys.platform == "win32" else ["-O3"]
    extensions = []
    for pyx in sorted(KERNEL_DIR.glob("*.pyx")):
        extensions.append(
            Extension(
                name=f"convnet._kernels.{pyx.stem}",
                sources=[str(pyx)],
                include_dirs=[numpy.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=list(optimise),
            )
        )
    return cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG_KERNELS,
            "wraparound": DEBUG_KERNELS,
            "initializedcheck": DEBUG_KERNELS,
            "cdivision": not DEBUG_KERNELS,
        },
        # The debug flag changes the generated C, so it must trigger a rebuild.
        force=DEBUG_KERNELS,
    )


setup(ext_modules=kernel_extensions(), cmdclass={"build_ext": BuildKernels})
