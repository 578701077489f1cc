// Elementwise kernels on raw device pointers. So far: SiLU forward and
// backward (the first kernel, proving the CUDA toolchain wiring; the harness
// issue adds the rest of the family and emulated tests).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ddpm::kernels {

// y[i] = x[i] * sigmoid(x[i]).
void silu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
// dx[i] (+)= dy[i] * s (1 + x (1 - s)), s = sigmoid(x[i]); accumulate adds.
void silu_backward(const float* x, const float* dy, float* dx, int64_t n, bool accumulate,
                   cudaStream_t stream);

}  // namespace ddpm::kernels
