// GroupNorm with bf16 activations in global memory (the bf16 twin of
// group_norm.cuh, issue 11): x, y, dy and dx are __nv_bfloat16 [N, P, C];
// the fused per-(sample, channel) add `bias` [N, C], gamma, beta, the
// statistics mean / rstd [N, G] and the gradients dbias, dgamma, dbeta are
// fp32. Every statistic and sum is computed in fp32 (the partial merges in
// double, as the fp32 kernels) in a fixed order: bitwise reproducible for a
// shape, no atomics. Outputs are rounded to bf16 once (nearest even); an
// accumulating dx adds the new gradient to the bf16 value in fp32, then rounds.
//   h = x + bias[n, c]          (bias optional)
//   y = act(gamma[c] * (h - mean[n, g]) * rstd[n, g] + beta[c])
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/group_norm.cuh"  // GroupNormShape

namespace ddpm::kernels {

// Scratch of either bf16 launcher, in bytes (16-byte aligned; contents need no
// initialisation and are dead after the call); 0 for batch 0. The limits are
// group_norm.cuh's (batch <= 65535, pixels >= 1, 1 <= channels <= 2048,
// channels % groups == 0), checked by every launcher. x, y, dy, dx take 16-byte
// accesses (8 bf16) when channels % 8 == 0 and they are 16-byte aligned; any
// 2-byte alignment works.
size_t group_norm_bf16_workspace_bytes(const GroupNormShape& s);

// As group_norm_forward (gamma/beta both or neither, bias optional, eps > 0).
void group_norm_forward_bf16(const __nv_bfloat16* x, const float* bias, const float* gamma,
                             const float* beta, __nv_bfloat16* y, float* mean, float* rstd,
                             const GroupNormShape& s, float eps, bool silu, void* workspace,
                             cudaStream_t stream);

// As group_norm_backward: dx (+)= dL/dx (bf16), dbias (+)= dL/dbias (fp32
// [N, C]); dgamma, dbeta (fp32) always add. Any gradient may be null.
void group_norm_backward_bf16(const __nv_bfloat16* x, const float* bias, const float* gamma,
                              const float* beta, const float* mean, const float* rstd,
                              const __nv_bfloat16* dy, __nv_bfloat16* dx, float* dbias,
                              float* dgamma, float* dbeta, const GroupNormShape& s, bool silu,
                              bool accumulate_dx, bool accumulate_dbias, void* workspace,
                              cudaStream_t stream);

}  // namespace ddpm::kernels
