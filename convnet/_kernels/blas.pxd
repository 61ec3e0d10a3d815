# One GEMM for both float types, shared by the kernels that multiply matrices. The BLAS is
# scipy's (scipy.linalg.cython_blas, Fortran order): a C-ordered (R, S) matrix with row stride
# ld is, to BLAS, the (S, R) matrix with leading dimension ld. The BLAS library must run
# single-threaded inside the kernels (convnet.threads.single_threaded_blas), since every call
# comes from a thread of our own.

from scipy.linalg.cython_blas cimport dgemm, sgemm

from convnet._kernels.floats cimport real


cdef inline void gemm(const char* transa, const char* transb, int m, int n, int k, const real* a, int lda,
                      const real* b, int ldb, real beta, real* c, int ldc) noexcept nogil:
    """C = op(A) @ op(B) + beta * C in BLAS's (Fortran) terms."""
    cdef real alpha = 1
    if real is float:
        sgemm(<char*>transa, <char*>transb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb, &beta, c, &ldc)
    else:
        dgemm(<char*>transa, <char*>transb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb, &beta, c, &ldc)
