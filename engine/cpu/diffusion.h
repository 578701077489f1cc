// DDPM's forward process on the CPU: the draws of one training step (t, eps),
// the noised batch x_t and the regression target. The reference the trainer
// uses and the oracle of kernels/diffusion.cuh (q_sample, diffusion_mse), with
// the same keys: eps of element e of image b at training step s is
// noise_normal(seed, training_noise, s, b, e).
#pragma once

#include <cstdint>
#include <string>

namespace ddpm {

// What the model predicts (diffusers' prediction_type). The values are those
// of kernels::PredictionType.
enum class PredictionType : int32_t { epsilon = 0, sample = 1, v_prediction = 2 };

// "epsilon" | "sample" | "v_prediction"; anything else throws std::invalid_argument.
PredictionType parse_prediction_type(const std::string& name);

namespace cpu {

struct DiffusionBatch {
  int64_t batch = 0;      // images
  int64_t per_image = 0;  // elements per image
  uint64_t seed = 0;
  uint32_t step = 0;  // the training step (the kernels read it from device memory)
  PredictionType prediction = PredictionType::epsilon;
};

// The trainer's timestep of `image` at `step`: floor(u T), u =
// noise_uniform(seed, training_timestep, step, image, 0), T = num_train_timesteps.
int32_t training_timestep(uint64_t seed, uint32_t step, uint32_t image,
                          int64_t num_train_timesteps);

// x_t = sqrt_abar[t_b] x0 + sqrt_one_minus_abar[t_b] eps over [batch, per_image],
// t [batch] indexing the tables (0 <= t_b < their length). eps from
// noise_normal (double Box-Muller); the formula is evaluated in double from the
// T inputs and rounded once to T (for T = float: the best float result, which
// the kernel is compared with).
template <typename T>
void q_sample(const T* x0, const int32_t* t, const T* sqrt_abar, const T* sqrt_one_minus_abar,
              const DiffusionBatch& b, T* x_t);

// The target the model output is regressed on, for the same draw as q_sample:
// eps (epsilon), x0 (sample) or v = sqrt_abar eps - sqrt_one_minus_abar x0
// (v_prediction); evaluated in double, rounded once to T.
template <typename T>
void diffusion_target(const T* x0, const int32_t* t, const T* sqrt_abar,
                      const T* sqrt_one_minus_abar, const DiffusionBatch& b, T* target);

}  // namespace cpu
}  // namespace ddpm
