// The DDPM-specific kernels: the forward process with its loss, and the
// per-step noise update of sampling. Random numbers come from engine/noise.h
// (Philox keyed on seed, purpose, step, image, element), the same function
// the CPU backend uses, so a step draws the same noise on both (up to the
// float rounding of Box-Muller). Everything that changes between steps is read
// from device memory, so a captured CUDA graph replays correctly.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ddpm::kernels {

enum class PredictionType : int32_t { epsilon = 0, sample = 1, v_prediction = 2 };

struct DiffusionBatch {
  int64_t batch = 0;      // images
  int64_t per_image = 0;  // elements per image
  uint64_t seed = 0;
  PredictionType prediction = PredictionType::epsilon;
};

// x_t = sqrt_abar[t_b] * x0 + sqrt_one_minus_abar[t_b] * eps, eps =
// noise_normal(seed, training_noise, *step, b, e) (computed in float:
// engine/noise.h's noise_normal_f, within kNormalFloatAbsError of it);
// t [batch] int32 timesteps;
// the tables [T] in device memory; step: the training step (device memory).
void q_sample(const float* x0, const int32_t* t, const float* sqrt_abar,
              const float* sqrt_one_minus_abar, const uint32_t* step, float* x_t,
              const DiffusionBatch& b, cudaStream_t stream);

size_t diffusion_mse_workspace_bytes(const DiffusionBatch& b);
// The MSE of the model output against the target q_sample's draw implies
// (eps, x0 or v = sqrt_abar eps - sqrt(1 - abar) x0), recomputed from the same
// keys instead of stored: loss[0] = mean((pred - target)^2), dpred = 2 (pred -
// target) / n (overwritten). Two-stage reduction, deterministic. workspace: at
// least diffusion_mse_workspace_bytes(b), 8-byte aligned. An empty batch throws.
void diffusion_mse(const float* pred, const float* x0, const int32_t* t, const float* sqrt_abar,
                   const float* sqrt_one_minus_abar, const uint32_t* step, float* loss,
                   float* dpred, const DiffusionBatch& b, void* workspace, cudaStream_t stream);

// One reverse step's coefficients (engine/scheduler.h's StepCoefficients in float):
//   x0 = x0_from_x x + x0_from_model m, clamped to [-clip_range, clip_range] when clip
//   x' = prev_from_x0 x0 + prev_from_x x + prev_from_model m + sigma z
struct NoiseUpdateStep {
  float x0_from_x, x0_from_model, clip_range;
  int32_t clip;
  float prev_from_x0, prev_from_x, prev_from_model, sigma;
  int32_t timestep;
};

// x (in place) becomes x_{t-1} using steps[*step_index] and z =
// noise_normal(seed, step_noise, *step_index, first_image + b, e) where sigma != 0.
void noise_update(const NoiseUpdateStep* steps, const uint32_t* step_index, const float* model_out,
                  float* x, int64_t batch, int64_t per_image, int64_t first_image, uint64_t seed,
                  cudaStream_t stream);

// Advances *step_index by one and writes the next step's timestep (as float,
// the UNet's input) to timesteps[batch], if there is a next step (index <
// num_steps); a single tiny kernel, so the loop body stays capturable.
void advance_sampling_step(const NoiseUpdateStep* steps, uint32_t* step_index, int64_t num_steps,
                           float* timesteps, int64_t batch, cudaStream_t stream);

}  // namespace ddpm::kernels
