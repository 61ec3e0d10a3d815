# The exact GELU and its slope, inline, for every kernel that applies it (activations.pyx, and
# batchnorm.pyx where it is fused onto the normalisation):
#     gelu(x) = x * Phi(x),  gelu'(x) = Phi(x) + x * phi(x),
# Phi(x) = (1 + erf(x / sqrt(2))) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the standard normal
# CDF and density. float32 uses erff / expf, so the float32 path stays in single precision.

from libc.math cimport erf, erff, exp, expf

from convnet._kernels.floats cimport real


cdef inline real normal_cdf(real x) noexcept nogil:
    if real is float:
        return <float>0.5 * (<float>1 + erff(x * <float>0.70710678118654752440))
    else:
        return 0.5 * (1 + erf(x * 0.70710678118654752440))


cdef inline real normal_pdf(real x) noexcept nogil:
    if real is float:
        return <float>0.39894228040143267794 * expf(<float>-0.5 * x * x)
    else:
        return 0.39894228040143267794 * exp(-0.5 * x * x)


cdef inline real gelu(real x) noexcept nogil:
    return x * normal_cdf(x)


cdef inline real gelu_slope(real x) noexcept nogil:
    return normal_cdf(x) + x * normal_pdf(x)
