// kernels/vendor_bf16.h where the vendor libraries are not built (the CPU
// emulator: kernels/CMakeLists.txt builds cuDNN's and cuBLAS's wrappers with
// nvcc only): nothing is available, and every call says so.
#include <stdexcept>
#include <string>

#include "kernels/vendor_bf16.h"

namespace ddpm::kernels {

namespace {

constexpr const char* kWhy = "this build has no cuDNN or cuBLAS (the CPU emulator)";

}  // namespace

bool cudnn_bf16_available(std::string* reason) {
  if (reason) *reason = kWhy;
  return false;
}

struct CudnnConvBf16::State {};

CudnnConvBf16::CudnnConvBf16(const Conv2dShape&) {
  throw std::runtime_error(std::string("cuDNN unavailable: ") + kWhy);
}
CudnnConvBf16::~CudnnConvBf16() = default;
size_t CudnnConvBf16::workspace_bytes() const {
  return 0;
}
std::string CudnnConvBf16::algorithms() const {
  return "";
}
void CudnnConvBf16::forward(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, void*,
                            cudaStream_t) const {}
void CudnnConvBf16::backward_data(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*, void*,
                                  cudaStream_t) const {}
void CudnnConvBf16::backward_filter(const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*,
                                    void*, cudaStream_t) const {}

bool cublas_bf16_available(std::string* reason) {
  if (reason) *reason = kWhy;
  return false;
}

void gemm_cublas_bf16(bool, bool, int64_t, int64_t, int64_t, const __nv_bfloat16*,
                      const __nv_bfloat16*, __nv_bfloat16*, cudaStream_t) {
  throw std::runtime_error(std::string("gemm_cublas_bf16: ") + kWhy);
}
void gemm_cublas_bf16(bool, bool, int64_t, int64_t, int64_t, const __nv_bfloat16*,
                      const __nv_bfloat16*, float*, cudaStream_t) {
  throw std::runtime_error(std::string("gemm_cublas_bf16: ") + kWhy);
}

}  // namespace ddpm::kernels
