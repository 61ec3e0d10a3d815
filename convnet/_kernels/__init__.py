"""Compiled Cython kernels (built from the .pyx files beside this one)."""
