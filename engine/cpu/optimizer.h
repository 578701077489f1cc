// Optimizer steps over the flat parameter buffer on the CPU: the reference the
// fused CUDA AdamW kernel is tested against.
#pragma once

#include <cstdint>

namespace ddpm {

// PyTorch's torch.optim.AdamW: decoupled weight decay, bias-corrected moments.
struct AdamWConfig {
  double lr = 2e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

namespace cpu {

// One AdamW update of n parameters; `step` counts from 1. Gradients are
// multiplied by grad_scale first (global-norm clipping passes its factor).
template <typename T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, const AdamWConfig& c, int64_t step,
                double grad_scale = 1.0);

// sqrt(sum g^2), accumulated in double.
template <typename T>
double global_norm(const T* grad, int64_t n);

}  // namespace cpu
}  // namespace ddpm

namespace ddpm::cpu {

// ema -= (1 - decay) * (ema - param), in diffusers' EMAModel's order of
// operations (1 - decay rounded to T first), so that decay 0 gives ema = param
// up to one rounding and float results match diffusers' float32 EMA.
template <typename T>
void ema_update(T* ema, const T* param, int64_t n, double decay);

}  // namespace ddpm::cpu
