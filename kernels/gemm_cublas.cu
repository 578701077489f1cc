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
//   - The bf16 baseline of vendor_bf16.h (gemm_cublas_bf16) is the same call
//     through cublasGemmEx: A and B CUDA_R_16BF, C bf16 or fp32,
//     CUBLAS_COMPUTE_32F (fp32 accumulation; cuBLAS uses tensor cores for bf16
//     inputs under the default math mode), CUBLAS_GEMM_DEFAULT, no bias.
//   - Bias: C is prefilled with the bias rows (C += bias when accumulating)
//     by a small broadcast kernel, then beta = 1. Without bias beta is 1 when
//     accumulating, else 0 (cuBLAS then never reads C). k = 0 never reaches
//     cuBLAS: C = bias, C += bias, or C = 0 directly.
#include <cublas_v2.h>

#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>

#include "kernels/check.cuh"
#include "kernels/dynamic_library.h"
#include "kernels/emulation/launch.h"
#include "kernels/gemm_internal.cuh"
#include "kernels/vector_io.cuh"
#include "kernels/vendor_bf16.h"

namespace ddpm::kernels::detail {

namespace {

// The functions we call, resolved once per process.
struct CublasApi {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  // The exported cublasGemmEx (C++ sees a second, inline overload taking a
  // cudaDataType compute type, hence the explicit type).
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
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
      a.gemm_ex = lib.symbol<decltype(a.gemm_ex)>("cublasGemmEx");
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

namespace ddpm::kernels {

namespace {

// vendor_bf16.h's gemm_cublas_bf16, C of type c_type.
void gemm_ex_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                  const __nv_bfloat16* a, const __nv_bfloat16* b, void* c, cudaDataType_t c_type,
                  cudaStream_t stream) {
  constexpr int64_t kMax = (int64_t(1) << 31) - 1;
  for (const auto& [name, v] : {std::pair{"m", m}, std::pair{"n", n}, std::pair{"k", k}})
    if (v < 0 || v > kMax)
      throw std::invalid_argument(std::string("gemm_cublas_bf16: ") + name + " is " +
                                  std::to_string(v) + ", expected 0 .. 2^31 - 1");
  std::string why;
  if (!detail::gemm_cublas_available(&why))
    throw std::runtime_error("gemm_cublas_bf16: cuBLAS unavailable: " + why);
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty product
    const size_t bytes = c_type == CUDA_R_32F ? sizeof(float) : sizeof(__nv_bfloat16);
    DDPM_CUDA_CHECK(cudaMemsetAsync(c, 0, size_t(m * n) * bytes, stream));
    return;
  }
  const cublasHandle_t handle = detail::thread_handle();
  detail::cublas_check(detail::cublas().set_stream(handle, stream), "cublasSetStream_v2");
  // As gemm_cublas: row-major C = column-major C^T = op(B)^T op(A)^T.
  const float alpha = 1.0f, beta = 0.0f;  // float: the scale type of CUBLAS_COMPUTE_32F
  const int lda = int(trans_a ? m : k), ldb = int(trans_b ? k : n), ldc = int(n);
  detail::cublas_check(
      detail::cublas().gemm_ex(handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                               trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
                               b, CUDA_R_16BF, ldb, a, CUDA_R_16BF, lda, &beta, c, c_type, ldc,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "cublasGemmEx");
}

}  // namespace

bool cublas_bf16_available(std::string* reason) {
  return detail::gemm_cublas_available(reason);
}

void gemm_cublas_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c,
                      cudaStream_t stream) {
  gemm_ex_bf16(trans_a, trans_b, m, n, k, a, b, c, CUDA_R_16BF, stream);
}

void gemm_cublas_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      const __nv_bfloat16* a, const __nv_bfloat16* b, float* c,
                      cudaStream_t stream) {
  gemm_ex_bf16(trans_a, trans_b, m, n, k, a, b, c, CUDA_R_32F, stream);
}

}  // namespace ddpm::kernels
