// The DDPM-specific kernels: the forward process with its loss, and the
// reverse process of sampling (x_T, the per-step noise update, the step
// advance), its state in device memory. Random numbers come from
// engine/noise.h (Philox keyed on seed, purpose, step, image, element): the
// float Box-Muller draws, the same functions the CPU sampler calls, so a step
// draws the same noise on both (bitwise where the device's logf / sinf / cosf
// round as the host's, e.g. under the emulator; else within
// kNormalFloatAbsError). Everything that changes between steps or batches is
// read from device memory, so a captured CUDA graph replays correctly.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <optional>

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

// A sampling run's state in device memory. The kernels below read everything
// that differs between batches and steps from here, so one captured graph
// serves every batch of a shape: the host writes seed, first_image and
// num_steps before a batch (an async copy outside the graph), start_sampling
// sets step_index to 0 and advance_sampling_step moves it.
struct SamplingState {
  uint64_t seed;
  uint32_t first_image;  // image b's noise is keyed on first_image + b (< 2^32: the caller checks)
  uint32_t num_steps;    // steps in the table, >= 1
  uint32_t step_index;   // the step being taken
  uint32_t reserved;
};

// x_T: x[b, e] = noise_normal_f(seed, initial_sample, 0, first_image + b, e),
// bitwise engine/noise.h's float draw (the same code, compiled for the device).
void initial_noise(const SamplingState* state, float* x, int64_t batch, int64_t per_image,
                   cudaStream_t stream);

// The start of a run: step_index = 0 and timesteps[b] = steps[0].timestep
// (as float, the UNet's input) for b < batch.
void start_sampling(const NoiseUpdateStep* steps, SamplingState* state, float* timesteps,
                    int64_t batch, cudaStream_t stream);

// x (in place) becomes x_{t-1} using k = steps[state->step_index] and z =
// noise_normal_f(seed, step_noise, step_index, first_image + b, e) where
// k.sigma != 0 (drawn in the kernel, never stored).
void noise_update(const NoiseUpdateStep* steps, const SamplingState* state, const float* model_out,
                  float* x, int64_t batch, int64_t per_image, cudaStream_t stream);

// noise_update with a bf16 model (issue 11): m = float(model_out[i]) (exact),
// x (fp32, in place) updated as above, bitwise noise_update's result for the
// widened model_out; then x_model_input[i] = bf16(new x[i]) (nearest even),
// the next step's model input, unless x_model_input is null (the last step).
// 8-byte bf16 quad accesses when per_image % 4 == 0 and every pointer is
// 16-byte aligned.
void noise_update_bf16(const NoiseUpdateStep* steps, const SamplingState* state,
                       const __nv_bfloat16* model_out, float* x, __nv_bfloat16* x_model_input,
                       int64_t batch, int64_t per_image, cudaStream_t stream);

// Advances state->step_index by one and writes the next step's timestep to
// timesteps[batch] if there is a next step (index < num_steps); when there is
// none and `loop` is given, ends that WHILE graph node's loop with
// cudaGraphSetConditional(*loop, 0). A single tiny kernel, so the loop body
// stays capturable.
void advance_sampling_step(const NoiseUpdateStep* steps, SamplingState* state, float* timesteps,
                           int64_t batch, std::optional<cudaGraphConditionalHandle> loop,
                           cudaStream_t stream);

}  // namespace ddpm::kernels
