// Row-major fp32 GEMM for the linear layers (attention's q/k/v/out
// projections, the time-embedding MLP):
//   C[m, n] (= or +=) op(A)[m, k] * op(B)[k, n] (+ bias[n])
// A is stored [m, k] (or [k, m] with trans_a), B [k, n] (or [n, k] with
// trans_b), C [m, n], all contiguous. A linear layer y = x W^T + b is
// gemm(false, true, rows, out, in, x, W, b, y); its backward dx = dy W is
// gemm(false, false, ...), dW += dy^T x is gemm(true, false, ..., accumulate),
// and db += column sums of dy is column_sum_add (reduce.cuh).
// Two implementations: our own tiled SIMT kernel (fp32 FMA, deterministic)
// and cuBLAS (loaded with dlopen at first use; fp32, no TF32), the reference
// of the GPU tests and the benchmark's baseline.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ddpm::kernels {

enum class GemmImpl { simt, cublas };

const char* gemm_impl_name(GemmImpl impl);        // "simt", "cublas"
GemmImpl parse_gemm_impl(std::string_view name);  // std::invalid_argument naming the choices
// False for cublas in emulated builds or where libcublas cannot be loaded.
bool gemm_impl_available(GemmImpl impl, std::string* reason = nullptr);

// m, n, k >= 0 (an empty product writes bias, or leaves C with accumulate),
// each operand under 2^31 elements; std::invalid_argument otherwise. bias may
// be null. Pointers need 4-byte alignment; 16-byte alignment and dimensions
// divisible by 4 take 128-bit loads.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
          const float* b, const float* bias, float* c, bool accumulate, GemmImpl impl,
          cudaStream_t stream);

}  // namespace ddpm::kernels
