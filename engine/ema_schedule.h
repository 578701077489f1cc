// The decay of the EMA of the weights at each optimizer step: diffusers'
// EMAModel.get_decay (diffusers/training_utils.py), so that a short run's EMA
// follows the trained weights instead of holding on to the initialisation
// (with a constant decay d, after k steps d^k of the random init remains:
// 37% after 10,000 steps at the paper's 0.9999).
//
// At the k-th optimizer step (k = 1 first), s = k - update_after_step - 1:
//   s <= 0                  decay 0 (the EMA becomes the weights)
//   warmup "default"        min(decay, (1 + s) / (10 + s))      diffusers' default
//   warmup "power"          min(decay, 1 - (1 + s / inv_gamma)^-power)
//                           (diffusers' use_ema_warmup=True)
//   warmup "none"           decay from step update_after_step + 1 on (the paper's
//                           recipe; decay 0 only for the steps before)
// then max(., min_decay). The update is diffusers' as well:
//   ema -= (1 - decay) * (ema - param)
// Host and device share this function (the fused AdamW + EMA kernel evaluates
// it from the device step counter, so a captured training step stays
// capturable).
#pragma once

#include <cmath>
#include <cstdint>

#include "engine/random.h"  // DDPM_HOST_DEVICE

namespace ddpm {

enum class EmaWarmup : int32_t { diffusers_default = 0, power = 1, none = 2 };

struct EmaSchedule {
  double decay = 0.9999;  // the ceiling (diffusers' `decay`)
  EmaWarmup warmup = EmaWarmup::diffusers_default;
  double inv_gamma = 1.0;         // "power" only
  double power = 2.0 / 3.0;       // "power" only
  int64_t update_after_step = 0;  // the EMA copies the weights until after this step
  double min_decay = 0.0;         // the floor, once the EMA averages at all
};

// The decay applied at optimizer step `step` (1-based), computed in double.
DDPM_HOST_DEVICE inline double ema_decay_at(const EmaSchedule& s, int64_t step) {
  const int64_t k = step - s.update_after_step - 1;
  if (s.warmup == EmaWarmup::none ? k < 0 : k <= 0) return 0.0;
  const double kd = double(k);
  double d = s.decay;
  if (s.warmup == EmaWarmup::diffusers_default)
    d = (1.0 + kd) / (10.0 + kd);
  else if (s.warmup == EmaWarmup::power)
    d = 1.0 - pow(1.0 + kd / s.inv_gamma, -s.power);
  d = d < s.decay ? d : s.decay;
  return d > s.min_decay ? d : s.min_decay;
}

}  // namespace ddpm
