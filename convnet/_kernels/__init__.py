"""Compiled Cython kernels (built from the .pyx files beside this one).

Every kernel takes its arguments in one order: input arrays, then scalars, then the
output arrays it overwrites, then num_threads. The float type they are compiled for
is declared once, in floats.pxd. Callers validate every shape first: the kernels
run without bounds checks.
"""
