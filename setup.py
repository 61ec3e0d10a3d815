"""Build script for convnet's Cython kernels (convnet/_kernels/*.pyx).

Metadata and dependencies live in pyproject.toml; this file only describes the
extension modules and how to compile them:

* language level 3, -O3, numpy's headers;
* bounds and wraparound checks off, unless CONVNET_DEBUG_KERNELS=1 is set in
  the environment at build time (then every memoryview access is checked);
* OpenMP when the compiler accepts it, otherwise a serial build and a warning;
* AVX2 and FMA (-mavx2 -mfma) on an x86-64 machine whose CPU and compiler have
  them, unless CONVNET_PORTABLE=1 is set at build time. The elementwise kernels
  (Winograd transforms, batch norm, GELU, pooling) then run 8 floats per
  instruction instead of SSE2's 4. Such a build refuses to import on a CPU
  without them (convnet/_kernels/cpu.pyx, compiled without these flags, checks
  first), so build with CONVNET_PORTABLE=1 what is to run on other machines.
"""

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_DIR = Path("convnet") / "_kernels"
DEBUG_KERNELS = os.environ.get("CONVNET_DEBUG_KERNELS", "") not in ("", "0")
PORTABLE_KERNELS = os.environ.get("CONVNET_PORTABLE", "") not in ("", "0")
# The one module compiled for the baseline instruction set: it checks the CPU before the others load.
CPU_CHECK_MODULE = "convnet._kernels.cpu"

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return omp_get_max_threads() > 0 && n > 0 ? 0 : 1;
}
"""

# Compiled with AVX2_FMA_FLAGS and run: exits 0 only where the compiler and this CPU both have them.
AVX2_FMA_PROBE = r"""
#include <immintrin.h>
int main(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 1;
    volatile float a = 1.5f;
    __m256 x = _mm256_set1_ps(a);
    __m256 y = _mm256_fmadd_ps(x, x, x);
    return _mm256_cvtss_f32(y) == 3.75f ? 0 : 1;
}
"""
AVX2_FMA_FLAGS = ["-mavx2", "-mfma"]


def probe(compiler, code, compile_args, link_args, run=False):
    """Whether ``code`` compiles and links with these flags (and, if ``run``, exits 0)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "probe.c"
        source.write_text(code)
        try:
            objects = compiler.compile([str(source)], output_dir=tmp, extra_postargs=compile_args)
            compiler.link_executable(objects, "probe", output_dir=tmp, extra_postargs=link_args)
        except Exception:  # any compiler or linker failure means "not this flag set"
            return False
        if not run:
            return True
        return subprocess.run([str(Path(tmp) / "probe")], capture_output=True).returncode == 0


def openmp_flags_for(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or None if unsupported."""
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    return next((flags for flags in candidates if probe(compiler, OPENMP_PROBE, *flags)), None)


def avx2_fma_wanted(compiler):
    """AVX2 + FMA for the kernels: on x86-64 where the compiler and this machine's CPU have them,
    unless CONVNET_PORTABLE is set."""
    if PORTABLE_KERNELS or compiler.compiler_type == "msvc" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return probe(compiler, AVX2_FMA_PROBE, AVX2_FMA_FLAGS, [], run=True)


class BuildKernels(build_ext):
    """build_ext that adds OpenMP flags when the compiler supports them."""

    def build_extensions(self):
        flags = openmp_flags_for(self.compiler)
        if flags is None:
            self.warn(
                "convnet: the C compiler does not accept OpenMP; building serial kernels. "
                "convnet.set_num_threads() will then only affect BLAS."
            )
        avx2_fma = avx2_fma_wanted(self.compiler)
        # The choice changes every object file, so a build that chose otherwise last time starts over.
        stamp = Path(self.build_temp) / "convnet-kernel-isa"
        isa = "avx2+fma" if avx2_fma else "baseline"
        if not stamp.exists() or stamp.read_text() != isa:
            self.force = True
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(isa)
        for ext in self.extensions:
            if flags is not None:
                ext.extra_compile_args += flags[0]
                ext.extra_link_args += flags[1]
            if avx2_fma:
                ext.define_macros.append(("CONVNET_AVX2_FMA", "1"))
                if ext.name != CPU_CHECK_MODULE:
                    ext.extra_compile_args += AVX2_FMA_FLAGS
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
