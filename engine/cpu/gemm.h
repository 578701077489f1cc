// Row-major GEMM through CBLAS: C = alpha * op(A) * op(B) + beta * C, with
// op(A) M x K, op(B) K x N, and leading dimensions in elements.
#pragma once

namespace ddpm::cpu {

template <typename T>
void gemm(bool trans_a, bool trans_b, int m, int n, int k, T alpha, const T* a, int lda, const T* b,
          int ldb, T beta, T* c, int ldc);

}  // namespace ddpm::cpu
