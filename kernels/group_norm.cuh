// GroupNorm over channels-last activations, optionally fused with a
// per-(sample, channel) add before it (the ResBlock's time-embedding
// projection) and a SiLU after it:
//   h = x + bias[n, c]          (bias optional)
//   y = act(gamma[c] * (h - mean[n, g]) * rstd[n, g] + beta[c])
// Statistics are reduced across several blocks per (sample, group), so a
// batch of 1 still fills the GPU; mean and rstd are written for backward.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

struct GroupNormShape {
  int64_t batch = 0;     // N
  int64_t pixels = 0;    // H * W (or tokens)
  int64_t channels = 0;  // C, divisible by groups
  int64_t groups = 0;
};

// Scratch the launchers need (partial sums between their kernels), in bytes:
// enough for either launcher, 16-byte aligned (cudaMalloc's 256 is fine); its
// contents need no initialisation and are dead after the call. 0 for batch 0.
//
// Limits, checked by every launcher (std::invalid_argument naming it):
// batch <= 65535, pixels >= 1, 1 <= channels <= 2048, channels % groups == 0.
// Results are bitwise reproducible for a shape (fixed reduction order, no
// atomics). x, y, dy and dx take 128-bit accesses when channels % 4 == 0 and
// they are 16-byte aligned; any alignment works.
size_t group_norm_workspace_bytes(const GroupNormShape& s);

// gamma/beta null: no affine; bias null: no fused add. mean, rstd: [N, G].
// gamma and beta come together (both or neither); eps > 0.
void group_norm_forward(const float* x, const float* bias, const float* gamma, const float* beta,
                        float* y, float* mean, float* rstd, const GroupNormShape& s, float eps,
                        bool silu, void* workspace, cudaStream_t stream);

// dx (+)= dL/dx, dbias (+)= dL/dbias [N, C] (the same as dL/dh summed over
// pixels); dgamma, dbeta always add (the flat gradient buffer is zeroed once a
// step). Any gradient pointer may be null. beta is read only with silu (the
// SiLU derivative needs the pre-activation). dgamma/dbeta need gamma. mean
// and rstd are the forward's outputs for these inputs.
void group_norm_backward(const float* x, const float* bias, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dbias, float* dgamma, float* dbeta, const GroupNormShape& s,
                         bool silu, bool accumulate_dx, bool accumulate_dbias, void* workspace,
                         cudaStream_t stream);

}  // namespace ddpm::kernels
