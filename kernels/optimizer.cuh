// The optimizer step over the flat parameter buffer: the global gradient norm
// (two-stage reduction) and AdamW fused with the EMA update and global-norm
// clipping. Step count, learning-rate schedule and clip factor are computed on
// the device from device memory, so the whole training step is capturable.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "engine/ema_schedule.h"

namespace ddpm::kernels {

size_t grad_norm_workspace_bytes(int64_t n);
// *norm = sqrt(sum g^2) (float, device memory). Deterministic: fixed block
// partition, partial sums in double, one final block. workspace: at least
// grad_norm_workspace_bytes(n), 8-byte aligned. n == 0 gives 0.
void grad_norm(const float* grad, int64_t n, float* norm, void* workspace, cudaStream_t stream);

struct AdamWEmaConfig {
  // Doubles, as the CPU reference (engine/cpu/optimizer.h) holds them, so both
  // derive the step's scalars from the same values.
  double lr = 2e-4;  // peak learning rate
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int32_t warmup_steps = 0;  // lr * min(1, step / warmup_steps)
  double clip_norm = 0.0;    // > 0: gradients scaled by min(1, clip_norm / (norm + 1e-6))
  EmaSchedule ema;  // the step's EMA decay: ema_decay_at(ema, step) (engine/ema_schedule.h)
};

// With step = *step (1-based, device memory) and norm = *norm (from grad_norm):
// torch.optim.AdamW on param with moments m, v, then diffusers' EMA update
// ema -= (1 - d) (ema - param) with d = ema_decay_at(c.ema, step).
// ema may be null (no EMA); norm may be null when clip_norm <= 0; *step must be
// >= 1. Matches engine/cpu/optimizer.h's adamw_step and ema_update with
// grad_scale = the clip factor and the trainer's warmup: the step's scalars are
// derived in double from the config as the CPU derives them, and each
// element runs the CPU's float formula (up to the GPU's FMA contraction).
// params_bf16 (optional, n elements): also receives the updated param rounded
// to bf16 (nearest even), the bf16 weights of the next mixed-precision
// forward, with no separate cast pass; null leaves the fp32 behaviour as
// without it (bitwise). Not written when the step is skipped (non-finite norm).
void adamw_ema_step(float* param, const float* grad, float* m, float* v, float* ema, int64_t n,
                    const uint32_t* step, const float* norm, const AdamWEmaConfig& c,
                    cudaStream_t stream, __nv_bfloat16* params_bf16 = nullptr);

}  // namespace ddpm::kernels
