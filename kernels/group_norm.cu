// The fp32 GroupNorm launchers (contract: group_norm.cuh): x, y, dy and dx
// stored as float. The algorithm, its kernels and launchers are
// group_norm_kernels.cuh's, shared with the bf16 launchers of
// group_norm_bf16.cu; this file instantiates them for T = float (float4
// accesses when C % 4 == 0 and the big arrays are 16-byte aligned).
#include "kernels/group_norm.cuh"

#include "kernels/group_norm_kernels.cuh"

namespace ddpm::kernels {

size_t group_norm_workspace_bytes(const GroupNormShape& s) {
  return detail::gn::workspace_bytes<float>("group_norm_workspace_bytes", s);
}

void group_norm_forward(const float* x, const float* bias, const float* gamma, const float* beta,
                        float* y, float* mean, float* rstd, const GroupNormShape& s, float eps,
                        bool silu, void* workspace, cudaStream_t stream) {
  detail::gn::forward<float>("group_norm_forward", x, bias, gamma, beta, y, mean, rstd, s, eps,
                             silu, workspace, stream);
}

void group_norm_backward(const float* x, const float* bias, const float* gamma, const float* beta,
                         const float* mean, const float* rstd, const float* dy, float* dx,
                         float* dbias, float* dgamma, float* dbeta, const GroupNormShape& s,
                         bool silu, bool accumulate_dx, bool accumulate_dbias, void* workspace,
                         cudaStream_t stream) {
  detail::gn::backward<float>("group_norm_backward", x, bias, gamma, beta, mean, rstd, dy, dx,
                              dbias, dgamma, dbeta, s, silu, accumulate_dx, accumulate_dbias,
                              workspace, stream);
}

}  // namespace ddpm::kernels
