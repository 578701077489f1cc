// The graph's mse_loss op on raw device pointers (engine/ops/mse_loss.h,
// engine/cpu/mse_loss.cpp): loss = mean over n elements of (pred - target)^2
// as one float, and its gradient for both inputs. The loss is summed in
// double in a fixed order (block partials, then one block over the partials
// in index order): bitwise reproducible for a shape, no atomics. The
// gradient reads d loss from device memory, so a captured graph needs no host
// value.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

// Scratch of mse_loss_forward for n elements, in bytes (8-byte aligned start;
// cudaMalloc's 256 is fine); 0 when one block does the whole sum. Its contents
// need no initialisation and are dead after the call.
size_t mse_loss_workspace_bytes(int64_t n);

// loss[0] = sum_i (pred[i] - target[i])^2 / n, the differences and the sum in
// double (as the CPU backend), rounded to float once. n >= 1 (an empty mean
// throws std::invalid_argument); workspace >= mse_loss_workspace_bytes(n).
// 128-bit loads when pred and target are 16-byte aligned.
void mse_loss_forward(const float* pred, const float* target, float* loss, int64_t n,
                      void* workspace, cudaStream_t stream);

// With g = dloss[0] * 2 / n and d_i = g (pred[i] - target[i]) (float, the CPU
// backend's order of operations):
//   dpred[i] (= or +=) d_i,   dtarget[i] (= or +=) -d_i.
// dloss is one float in device memory. Either gradient may be null (not
// wanted); they must not overlap each other or the inputs.
void mse_loss_backward(const float* pred, const float* target, const float* dloss, float* dpred,
                       float* dtarget, int64_t n, bool accumulate_pred, bool accumulate_target,
                       cudaStream_t stream);

// bf16 twins (issue 11): pred (and dpred) bf16, target, loss and dtarget
// fp32. The forward is mse_loss_forward on the widened pred (the same double
// sums, the same workspace: mse_loss_workspace_bytes(n)); the backward's d_i
// is the fp32 value above, dpred[i] = bf16(d_i) or bf16(float(dpred[i]) + d_i)
// (one rounding), dtarget as above. 8-byte bf16 quad accesses when every
// pointer is 16-byte aligned.
void mse_loss_forward_bf16(const __nv_bfloat16* pred, const float* target, float* loss, int64_t n,
                           void* workspace, cudaStream_t stream);
void mse_loss_backward_bf16(const __nv_bfloat16* pred, const float* target, const float* dloss,
                            __nv_bfloat16* dpred, float* dtarget, int64_t n, bool accumulate_pred,
                            bool accumulate_target, cudaStream_t stream);

}  // namespace ddpm::kernels
