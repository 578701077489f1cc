// The reverse process (DDPMPipeline / DDIMPipeline): x_T ~ N(0, I), then for
// each timestep of the scheduler, eps = UNet(x_t, t) and the noise update.
// Image i's noise is keyed on (seed, i), so the images of a seed do not depend
// on the batch size or on which batch (or machine) drew them.
//
// Two implementations of one contract, SamplingLoop:
//   - the host loop (here; sample_batch): the model runs on the executor's
//     backend, the noise and the update on the host. The CPU backend's path.
//   - the device loop (engine/cuda/device_sampler.h, in ddpm_cuda_backend):
//     everything on the GPU, the loop eager, one step captured as a CUDA
//     graph, or the whole loop one graph (SamplingGraph).
// The apps get the right one from DeviceRuntime::make_sampling_loop
// (engine/device_runtime.h). Both draw engine/noise.h's float Box-Muller, so
// for a seed their images differ only by the model's fp32 rounding.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/scheduler.h"
#include "engine/unet.h"

namespace ddpm {

// How the device loop runs its steps (the host loop has one way):
//   off:  eager launches, step after step;
//   step: one denoising step captured as a CUDA graph, replayed per step;
//   loop: the whole loop one graph launch per batch (a conditional WHILE
//         node; CUDA 12.4+ runtime and driver);
//   automatic: loop where supported, else step.
// All give bitwise the same images.
enum class SamplingGraph { automatic, off, step, loop };

const char* sampling_graph_name(SamplingGraph mode);
// "auto", "off", "step", "loop"; anything else: std::invalid_argument naming it.
SamplingGraph parse_sampling_graph(const std::string& name);

struct SamplerOptions {
  int64_t steps = 1000;
  uint64_t seed = 0;
  int64_t first_image = 0;  // index of the batch's first image in the run (its noise key)
  SamplingGraph graph = SamplingGraph::automatic;
  // Called with (steps done, steps in all): after each step by the host loop;
  // once per batch, when its images are back, by the device loop (whose host
  // does not see the steps).
  std::function<void(int64_t, int64_t)> progress;
  // Called on the host with i just before step i (0-based) of the batch is
  // enqueued, and with i = steps once the last is: by the host loop and by
  // the device loop in graph modes off and step; never in mode loop (one
  // launch runs every step). The apps' --profile-steps window uses it.
  std::function<void(int64_t)> before_step;
};

// Throws std::invalid_argument unless options.steps >= 1 and the images
// [first_image, first_image + batch) have noise keys (< 2^32).
void check_sampler_options(const SamplerOptions& options, int64_t batch);

// Samples batches of one shape with one inference executor of a UNet
// (parameters loaded). Keeps references to both: they must outlive it.
class SamplingLoop {
 public:
  virtual ~SamplingLoop() = default;

  // Runs one batch and writes x_0 as the scheduler leaves it ([batch, H, W,
  // C], not clamped). Throws std::invalid_argument for bad options (steps <
  // 1, image keys past 2^32) and std::runtime_error when `options.graph`
  // asks for a mode this loop cannot run.
  virtual void sample(const Scheduler& scheduler, const SamplerOptions& options,
                      std::vector<float>& out) = 0;

  // The mode `requested` runs as here (automatic resolved), with a sentence
  // for the log in `why` (if given): what runs and, for automatic, why.
  // Throws std::runtime_error for an explicit mode this loop cannot run.
  virtual SamplingGraph resolve(SamplingGraph requested, std::string* why = nullptr) const = 0;
};

// Makes the loop of a device for one executor (the executor's graph built by
// build_unet, `unet` its named values).
using SamplingLoopFactory =
    std::function<std::unique_ptr<SamplingLoop>(Executor& ex, const UNetGraph& unet)>;

// The host loop on any backend. resolve() gives `off` for every request (it
// has no graphs; the mode is accepted, so a script's --graph works on any device).
std::unique_ptr<SamplingLoop> make_host_sampling_loop(Executor& ex, const UNetGraph& unet);

// One batch of the host loop: the model on the executor's backend, x_T, the
// step noise and the update on the host (an f32 prediction in CPU memory is
// read in place, otherwise copied back each step). options.graph is ignored.
void sample_batch(Executor& ex, const UNetGraph& unet, const Scheduler& scheduler,
                  const SamplerOptions& options, std::vector<float>& out);

}  // namespace ddpm
