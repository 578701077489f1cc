// The reference backend's GEMMs through CBLAS (OpenBLAS where the build
// found it). BLAS runs single-threaded in whichever thread calls it: the
// engine's own pool (thread_pool.h) is the only source of parallelism, so
// BLAS threads never compete with it for the cores.
#include "engine/cpu/gemm.h"

#include <cblas.h>

// OpenBLAS's thread control; absent (null) with another BLAS.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace ddpm::cpu {

namespace {
CBLAS_TRANSPOSE tr(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

void single_threaded_blas() {
  static const bool done = [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}
}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  if (m == 0 || n == 0) return;
  single_threaded_blas();
  cblas_sgemm(CblasRowMajor, tr(trans_a), tr(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a,
                  int lda, const double* b, int ldb, double beta, double* c, int ldc) {
  if (m == 0 || n == 0) return;
  single_threaded_blas();
  cblas_dgemm(CblasRowMajor, tr(trans_a), tr(trans_b), m, n, k, alpha, a, lda, b, ldb, beta, c,
              ldc);
}

}  // namespace ddpm::cpu
