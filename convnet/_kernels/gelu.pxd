# The exact GELU and its slope, inline, for every kernel that applies it (activations.pyx, and
# batchnorm.pyx where it is fused onto the normalisation):
#     gelu(x) = x * Phi(x),  gelu'(x) = Phi(x) + x * phi(x),
# Phi(x) = (1 + erf(x / sqrt(2))) / 2 and phi(x) = exp(-x^2 / 2) / sqrt(2 pi) the standard normal
# CDF and density. float64 calls libm's erfc and exp. float32 calls no library function, so
# that the compiler can vectorise the loops (libm's erff / expf made GELU 6x slower than the
# batch norm + ReLU it follows); the C below is accurate to a few float32 ulps (gelu within
# 4e-7 absolute, docs/performance.md): with t = min(|x|, 13) (beyond, Phi is 0 or 1 in float32),
#   1 - Phi(t) = phi(t) * R(t),  R(t) = P4(t) / Q5(t), the Mills ratio: a least-squares rational
#                fit on [0, 13], relative error 6e-9 (R(0) = sqrt(pi / 2));
#   exp(y) = 2^k * e^r with k = round(y / ln 2), r = y - k ln 2 (ln 2 split in two parts so the
#                product is exact) and e^r its degree-7 Taylor polynomial (|r| <= ln 2 / 2).

from libc.math cimport erfc, exp

from convnet._kernels.floats cimport real


cdef extern from *:
    """
    typedef union { float f; int i; } convnet_float_bits;

    /* exp(-t * t / 2) for 0 <= t <= 13 */
    static inline float convnet_exp_neg_half_square_f(float t) {
        float y = -0.5f * t * t;
        int k = (int)(y * 1.44269504f - 0.5f);  /* round(y / ln 2); y <= 0, truncation towards 0 */
        float kf = (float)k;
        float r = (y - kf * 0.693145751953125f) - kf * 1.428606820309417e-06f;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        convnet_float_bits scale;
        scale.i = (k + 127) << 23;  /* 2^k; k >= -122 here, a normal float */
        return p * scale.f;
    }

    /* The selects below work on the bits (integer compares and masks): the compiler vectorises
       integer selects, while float compares may raise FP exceptions, which it must not speculate. */

    #define CONVNET_BITS_OF_13F 0x41500000  /* 13.0f */

    /* min(|x|, 13); NaN becomes 13 (x itself carries the NaN on) */
    static inline float convnet_clamped_abs_f(float x) {
        convnet_float_bits v;
        v.f = x;
        v.i &= 0x7fffffff;
        v.i = v.i < CONVNET_BITS_OF_13F ? v.i : CONVNET_BITS_OF_13F;  /* non-negative floats order like their bits */
        return v.f;
    }

    /* all ones when |x| < 13, else 0: beyond, phi(x) and the tail 1 - Phi(|x|) are 0 in float32 */
    static inline int convnet_inside_f(float x) {
        convnet_float_bits v;
        v.f = x;
        return -((v.i & 0x7fffffff) < CONVNET_BITS_OF_13F);
    }

    static inline float convnet_normal_pdf_f(float x) {
        convnet_float_bits pdf;
        pdf.f = 0.3989422804f * convnet_exp_neg_half_square_f(convnet_clamped_abs_f(x));
        pdf.i &= convnet_inside_f(x);
        return pdf.f;
    }

    static inline float convnet_normal_cdf_f(float x) {
        float t = convnet_clamped_abs_f(x);
        float p = (((1.020188836e-02f * t + 1.010383160e-01f) * t + 4.568330378e-01f) * t
                   + 1.095216977e+00f) * t + 1.253314145e+00f;
        float q = ((((1.020175158e-02f * t + 1.010454002e-01f) * t + 4.668751070e-01f) * t
                    + 1.198352247e+00f) * t + 1.671741689e+00f) * t + 1.0f;
        convnet_float_bits tail, upper, sign, out;
        tail.f = 0.3989422804f * convnet_exp_neg_half_square_f(t) * (p / q);  /* 1 - Phi(t) = Phi(-t) */
        tail.i &= convnet_inside_f(x);
        upper.f = 1.0f - tail.f;
        sign.f = x;
        int negative = sign.i >> 31;  /* all ones when x < 0 (or -0, or a negative NaN) */
        out.i = (tail.i & negative) | (upper.i & ~negative);
        return out.f;
    }
    """
    float convnet_normal_cdf_f(float x) noexcept nogil
    float convnet_normal_pdf_f(float x) noexcept nogil


cdef inline real normal_cdf(real x) noexcept nogil:
    if real is float:
        return convnet_normal_cdf_f(x)
    else:
        return 0.5 * erfc(-x * 0.70710678118654752440)  # not 1 + erf(.): that cancels for x << 0


cdef inline real normal_pdf(real x) noexcept nogil:
    if real is float:
        return convnet_normal_pdf_f(x)
    else:
        return 0.39894228040143267794 * exp(-0.5 * x * x)


cdef inline real gelu(real x) noexcept nogil:
    return x * normal_cdf(x)


cdef inline real gelu_slope(real x) noexcept nogil:
    return normal_cdf(x) + x * normal_pdf(x)
