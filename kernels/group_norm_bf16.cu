// The bf16 GroupNorm launchers (contract: group_norm_bf16.cuh): x, y, dy and
// dx stored as __nv_bfloat16, everything else fp32. The kernels and launchers
// are group_norm_kernels.cuh's (the fp32 algorithm, one body), instantiated
// here for T = __nv_bfloat16. What the storage type changes, and why:
//   - Loads widen bf16 to float exactly, so every statistic, partial and sum
//     is the fp32 computation on the widened inputs (the same reduction
//     structure; the row split differs where TX differs, V = 8 instead of 4).
//     Only y and dx are rounded, once, to bf16 (nearest even).
//   - The pixel cut aims at tiles of 32 KB as fp32's (16384 elements) and
//     takes TY from the V = 8 block shape (C % 8 == 0) or the scalar one; the
//     cut depends on the shape only.
//   - Accumulating dx: out = bf16(float(dx) + dh), the addition in fp32.
//   - The backward tile kernels ask for 2 blocks per SM, not 4 (registers:
//     group_norm_kernels.cuh's kBackwardBlocksPerSm).
#include "kernels/group_norm_bf16.cuh"

#include "kernels/group_norm_kernels.cuh"

namespace ddpm::kernels {

using bf16 = __nv_bfloat16;

size_t group_norm_bf16_workspace_bytes(const GroupNormShape& s) {
  return detail::gn::workspace_bytes<bf16>("group_norm_bf16_workspace_bytes", s);
}

void group_norm_forward_bf16(const bf16* x, const float* bias, const float* gamma,
                             const float* beta, bf16* y, float* mean, float* rstd,
                             const GroupNormShape& s, float eps, bool silu, void* workspace,
                             cudaStream_t stream) {
  detail::gn::forward<bf16>("group_norm_forward_bf16", x, bias, gamma, beta, y, mean, rstd, s, eps,
                            silu, workspace, stream);
}

void group_norm_backward_bf16(const bf16* x, const float* bias, const float* gamma,
                              const float* beta, const float* mean, const float* rstd,
                              const bf16* dy, bf16* dx, float* dbias, float* dgamma, float* dbeta,
                              const GroupNormShape& s, bool silu, bool accumulate_dx,
                              bool accumulate_dbias, void* workspace, cudaStream_t stream) {
  detail::gn::backward<bf16>("group_norm_backward_bf16", x, bias, gamma, beta, mean, rstd, dy, dx,
                             dbias, dgamma, dbeta, s, silu, accumulate_dx, accumulate_dbias,
                             workspace, stream);
}

}  // namespace ddpm::kernels
