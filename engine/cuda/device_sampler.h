// The device sampling loop: the whole reverse process of a batch on the GPU.
// x lives in the UNet's `sample` input, the scheduler's step table and the
// loop's state (seed, first image, step count, step index: kernels/
// diffusion.cuh's SamplingState) in device memory. A step is the UNet forward
// (the executor on the CudaBackend; the timestep embedding reads the
// `timesteps` input), the noise-update kernel (Philox noise drawn in the
// kernel) and the step advance; no host copy or synchronisation between
// steps, the images read back once per batch (an async copy into pinned
// memory, one stream synchronisation).
//
// Graph modes (engine/sampler.h's SamplingGraph), bitwise identical:
//   off   the steps' kernels launched eagerly;
//   step  one step captured (CapturedGraph) and launched `steps` times;
//   loop  x_T, then a WHILE node whose body is the step: one graph launch per
//         batch; advance_sampling_step ends it after the last step.
// The graphs are captured at the first batch and reused by every later one:
// everything that differs between batches (seed, first image, step count,
// the step table's contents) is in device memory, written by async copies
// before the launch. They are re-captured only when the step table outgrows
// its buffer (the key holds the buffer's address). A loop is made per
// executor, i.e. per batch shape.
#pragma once

#include <memory>

#include "engine/sampler.h"

namespace ddpm {

// The factory of DeviceRuntime::make_sampling_loop on CUDA. Throws
// std::invalid_argument when the executor's backend is not a CudaBackend,
// its graph not f32 inference, or the model's output not the shape of its
// input.
std::unique_ptr<SamplingLoop> make_cuda_sampling_loop(Executor& ex, const UNetGraph& unet);

}  // namespace ddpm
