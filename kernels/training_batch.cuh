// A DDPM training step's batch, prepared on the device from the dataset's
// 8-bit images, and its metrics recorded on the device: the kernels that let a
// whole training step run (and be captured as a CUDA graph) with the step
// counter in device memory and no host copy but the upload of the images.
//
// Every draw is the CPU trainer's (engine/trainer.cpp, engine/cpu/diffusion.h),
// keyed on (seed, purpose, step, image, element) through engine/noise.h, with
// the step read from device memory:
//   t_b    = floor(u T), u = noise_uniform(seed, training_timestep, s, b, 0)
//            (cpu::training_timestep: bitwise)
//   flip_b = random_flip && noise_uniform(seed, training_flip, s, b, 0) < 0.5 (bitwise)
//   x0     = pixel / 127.5f - 1.0f, mirrored left-right when flip_b
//            (ImageDataset::to_float: bitwise)
//   x_t    = sqrt_abar[t_b] x0 + sqrt_one_minus_abar[t_b] eps and the target
//            (eps, x0 or sqrt_abar eps - sqrt_one_minus_abar x0), eps the float
//            Box-Muller of kernels::q_sample (noise_normal_pair_f: within
//            kNormalFloatAbsError of the CPU's double draw).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/diffusion.cuh"  // PredictionType

namespace ddpm::kernels {

struct TrainingBatchConfig {
  int64_t batch = 0;                            // images per step
  int64_t height = 0, width = 0, channels = 0;  // of each NHWC image
  uint64_t seed = 0;
  int64_t num_train_timesteps = 1000;  // T: the tables' length
  bool random_flip = false;
  PredictionType prediction = PredictionType::epsilon;
};

// Starts a step: *step += 1 (device memory), then with s = the new *step, for
// every image b: t[b] = t_b, timesteps[b] = float(t_b) (the UNet's input),
// flip[b] = flip_b. One block; the kernels after it on the stream read the
// new step.
void begin_training_step(uint32_t* step, int32_t* t, float* timesteps, uint8_t* flip,
                         const TrainingBatchConfig& c, cudaStream_t stream);

// From images [batch, height, width, channels] (uint8, NHWC, one per row) and
// begin_training_step's t and flip: x_t and target [batch, height, width,
// channels] (float; x0 itself is never stored). The tables are float [T] in
// device memory; step is read from device memory.
void prepare_training_batch(const uint8_t* images, const uint8_t* flip, const int32_t* t,
                            const float* sqrt_abar, const float* sqrt_one_minus_abar,
                            const uint32_t* step, float* x_t, float* target,
                            const TrainingBatchConfig& c, cudaStream_t stream);
// The same with x_t stored as bf16 (issue 11: the bf16 model's input): each
// element the fp32 overload's x_t rounded to nearest even; target fp32, as above.
void prepare_training_batch(const uint8_t* images, const uint8_t* flip, const int32_t* t,
                            const float* sqrt_abar, const float* sqrt_one_minus_abar,
                            const uint32_t* step, __nv_bfloat16* x_t, float* target,
                            const TrainingBatchConfig& c, cudaStream_t stream);

// One step's metrics as the device records them.
struct TrainingMetrics {
  float loss = 0, grad_norm = 0;
};

// ring[(*step - 1) % capacity] = {*loss, *grad_norm}: the step's metrics stay
// on the device until the host reads many steps' at once. One thread.
void record_training_metrics(const uint32_t* step, const float* loss, const float* grad_norm,
                             TrainingMetrics* ring, int64_t capacity, cudaStream_t stream);

}  // namespace ddpm::kernels
