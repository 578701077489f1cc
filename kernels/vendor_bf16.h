// The vendor libraries' bf16 paths, the baseline ddpm_cuda_bench times our
// bf16 kernels against (issue 11): cuDNN's convolution and cuBLAS's GEMM with
// bf16 tensors in memory and fp32 accumulation, the configuration PyTorch's
// bf16 autocast runs them in. Not an oracle (the bf16 kernels' tests compare
// with the CPU backend); the benchmark checks our outputs against these only
// loosely (apps/bench/bf16_report.h says how).
//
// Defined in conv2d_cudnn_bf16.cu and gemm_cublas.cu (nvcc library build
// only: both libraries are dlopen'ed at first use, cudnn_api.h and
// gemm_cublas.cu). Builds without them (the CPU emulator) link
// apps/bench/vendor_bf16_none.cpp, where nothing is available.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kernels/conv2d.cuh"  // Conv2dShape

namespace ddpm::kernels {

// Whether cuDNN can run (library loaded, a device, a handle); `reason` says
// why not.
bool cudnn_bf16_available(std::string* reason = nullptr);

// cuDNN's convolution of one shape in bf16: NHWC x / y, OHWI (KRSC) w, all
// CUDNN_DATA_BFLOAT16, compute type fp32, tensor-op math, through the legacy
// API (the BFLOAT16 configuration of cudnnConvolutionForward & co.). The
// descriptors and, per operation, the heuristic's first algorithm cuDNN
// supports for them within 512 MiB of scratch (cudnnGet*Algorithm_v7, what
// PyTorch uses without cudnn.benchmark; no trial runs) are set up once by the
// constructor, so a call costs what PyTorch's does. Asymmetric pads (cuDNN pads
// symmetrically) go through a zero-bordered copy of x / dx in the workspace,
// as F.pad before the convolution would. No bias or residual: the
// convolution alone. Outputs are overwritten (beta 0); dw is bf16, as the
// bf16 weight copy's gradient under autocast. Use from the constructing thread.
class CudnnConvBf16 {
 public:
  // Throws std::runtime_error (cuDNN unusable, or no algorithm for the shape)
  // or std::invalid_argument (conv2d_bf16_validate's limits).
  explicit CudnnConvBf16(const Conv2dShape& s);
  ~CudnnConvBf16();
  CudnnConvBf16(const CudnnConvBf16&) = delete;
  CudnnConvBf16& operator=(const CudnnConvBf16&) = delete;

  // Scratch the three operations need (each uses a prefix), bytes.
  size_t workspace_bytes() const;
  // The chosen algorithms, e.g. "fwd 1, bwd_data 1, bwd_filter 1 (tensor op)".
  std::string algorithms() const;

  void forward(const __nv_bfloat16* x, const __nv_bfloat16* w, __nv_bfloat16* y, void* workspace,
               cudaStream_t stream) const;
  void backward_data(const __nv_bfloat16* dy, const __nv_bfloat16* w, __nv_bfloat16* dx,
                     void* workspace, cudaStream_t stream) const;
  void backward_filter(const __nv_bfloat16* x, const __nv_bfloat16* dy, __nv_bfloat16* dw,
                       void* workspace, cudaStream_t stream) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Whether cuBLAS can run; `reason` says why not.
bool cublas_bf16_available(std::string* reason = nullptr);

// Row-major C[m, n] = op(A)[m, k] op(B)[k, n] as gemm_bf16.cuh lays it out
// (A [m, k] or [k, m] with trans_a, B [k, n] or [n, k] with trans_b), by
// cublasGemmEx with CUDA_R_16BF A and B, C bf16 or fp32, CUBLAS_COMPUTE_32F,
// CUBLAS_GEMM_DEFAULT (cuBLAS picks its tensor-core kernel). No bias; C
// overwritten. m, n, k >= 0 and each below 2^31 (std::invalid_argument).
void gemm_cublas_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c,
                      cudaStream_t stream);
void gemm_cublas_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                      const __nv_bfloat16* a, const __nv_bfloat16* b, float* c,
                      cudaStream_t stream);

}  // namespace ddpm::kernels
