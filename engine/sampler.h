// The reverse process (DDPMPipeline / DDIMPipeline): x_T ~ N(0, I), then for
// each timestep of the scheduler, eps = UNet(x_t, t) and the noise update.
// Image i's noise is keyed on (seed, i), so the images of a seed do not depend
// on the batch size.
#pragma once

#include <functional>

#include "engine/executor.h"
#include "engine/scheduler.h"
#include "engine/unet.h"

namespace ddpm {

struct SamplerOptions {
  int64_t steps = 1000;
  uint64_t seed = 0;
  int64_t first_image = 0;  // index of the batch's first image in the run
  // Called after each step with (steps done, steps in all).
  std::function<void(int64_t, int64_t)> progress;
};

// Runs one batch on an inference executor of `unet` (parameters loaded) and
// writes x_0 as the scheduler leaves it ([batch, H, W, C], not clamped). The
// model runs on the executor's backend (CPU or CUDA); the noise update of
// each step on the host, in the same code for every backend, so a backend's
// images differ from the CPU's only by the model's rounding.
void sample_batch(Executor& ex, const UNetGraph& unet, const Scheduler& scheduler,
                  const SamplerOptions& options, std::vector<float>& out);

}  // namespace ddpm
