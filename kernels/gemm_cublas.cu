// cuBLAS as gemm.cuh's reference implementation (nvcc library build only,
// DDPM_WITH_CUBLAS): the oracle of the GPU tests and the benchmark's
// baseline, in fp32 without TF32.
//
//   - libcublas is opened with dlopen at first use (dynamic_library.h), never
//     linked: programs start where it is missing, and say why cublas is
//     unavailable. Only the types and enums come from cublas_v2.h; every
//     function is a pointer from dlsym (the _v2 names are the exported ones).
//   - One handle per host thread and device (cuBLAS handles are not meant to
//     be shared between threads); each call sets the handle's stream. Handles
//     live until the process ends: destroying them from thread-exit or
//     static destructors could run after the CUDA runtime has shut down.
//   - Math mode CUBLAS_DEFAULT_MATH: for SGEMM that keeps fp32 precision
//     (TF32 tensor cores need CUBLAS_TF32_TENSOR_OP_MATH, which we never set;
//     NVIDIA_TF32_OVERRIDE can only turn TF32 off).
//   - Row-major C[m, n] is column-major C^T [n, m] = op(B)^T op(A)^T, so the
//     call is sgemm(op_b, op_a, n, m, k, B, A, C) with the leading dimensions
//     of the stored (row-major) arrays.
//   - Bias: C is prefilled with the bias rows (C += bias when accumulating)
//     by a small broadcast kernel, then beta = 1. Without bias beta is 1 when
//     accumulating, else 0 (cuBLAS then never reads C). k = 0 never reaches
//     cuBLAS: C = bias, C += bias, or C = 0 directly.
#include <cublas_v2.h>

#include <stdexcept>
#include <string>
#include <unordered_map>

#include "kernels/check.cuh"
#include "kernels/dynamic_library.h"
#include "kernels/emulation/launch.h"
#include "kernels/gemm_internal.cuh"
#include "kernels/vector_io.cuh"

namespace ddpm::kernels::detail {

namespace {

// The functions we call, resolved once per process.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
  std::string error;  // why the library is unusable; empty when it loaded
};

const CublasApi& cublas() {
  static const CublasApi api = [] {
    CublasApi a;
    static const DynamicLibrary lib{"libcublas.so.13", "libcublas.so"};
    if (!lib.loaded()) {
      a.error = "cannot load libcublas (" + lib.error() + ")";
      return a;
    }
    try {
      a.create = lib.symbol<decltype(a.create)>("cublasCreate_v2");
      a.set_stream = lib.symbol<decltype(a.set_stream)>("cublasSetStream_v2");
      a.set_math_mode = lib.symbol<decltype(a.set_math_mode)>("cublasSetMathMode");
      a.sgemm = lib.symbol<decltype(a.sgemm)>("cublasSgemm_v2");
      a.status_string = lib.symbol<decltype(a.status_string)>("cublasGetStatusString");
    } catch (const std::exception& e) {
      a.error = e.what();
    }
    return a;
  }();
  return api;
}

void cublas_check(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  const char* text = cublas().status_string ? cublas().status_string(status) : nullptr;
  throw std::runtime_error(std::string("cuBLAS ") + call +
                           " failed: " + (text ? text : "status " + std::to_string(int(status))));
}

// This thread's handle on the current device, created at first use.
cublasHandle_t thread_handle() {
  int device = 0;
  DDPM_CUDA_CHECK(cudaGetDevice(&device));
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  if (const auto it = handles.find(device); it != handles.end()) return it->second;
  cublasHandle_t handle = nullptr;
  cublas_check(cublas().create(&handle), "cublasCreate_v2");
  cublas_check(cublas().set_math_mode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  handles.emplace(device, handle);
  return handle;
}

// C[i, j] = bias[j], or C[i, j] += bias[j]; grid-stride over m * n elements.
__global__ void broadcast_bias_kernel(const float* __restrict__ bias, float* __restrict__ c,
                                      int64_t m, int64_t n, bool add) {
  const int64_t total = m * n;
  for (int64_t i = grid_thread_index(); i < total; i += grid_thread_count()) {
    const float b = bias[i % n];
    c[i] = add ? c[i] + b : b;
  }
}

}  // namespace

bool gemm_cublas_available(std::string* reason) {
  return vendor_library_usable(cublas().error, reason);
}

void gemm_cublas(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 const float* b, const float* bias, float* c, bool accumulate,
                 cudaStream_t stream) {
  if (m == 0 || n == 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  if (bias) {
    constexpr int kThreads = 256;
    DDPM_LAUNCH(broadcast_bias_kernel, grid_stride_blocks(m * n, kThreads), kThreads, 0, stream,
                bias, c, m, n, accumulate);
    DDPM_CUDA_CHECK(cudaGetLastError());
    beta = 1.0f;
  }
  if (k == 0) {  // the product is empty: the bias (or nothing) is the answer
    if (!bias && !accumulate)
      DDPM_CUDA_CHECK(cudaMemsetAsync(c, 0, size_t(m * n) * sizeof(float), stream));
    return;
  }
  const cublasHandle_t handle = thread_handle();
  cublas_check(cublas().set_stream(handle, stream), "cublasSetStream_v2");
  // gemm() checked every operand has < 2^31 elements, so m, n, k fit an int.
  const float alpha = 1.0f;
  const int lda = int(trans_a ? m : k), ldb = int(trans_b ? k : n), ldc = int(n);
  cublas_check(cublas().sgemm(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
                              b, ldb, a, lda, &beta, c, ldc),
               "cublasSgemm_v2");
}

}  // namespace ddpm::kernels::detail
