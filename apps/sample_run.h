// Sampling from a model folder (ours or diffusers'): the grid PNG, one PNG per
// image, and the images as a .npy array in [0, 1] (as DDPMPipeline's
// output_type="np").
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ddpm::app {

struct SampleOptions {
  std::filesystem::path model;
  int64_t steps = 1000;
  std::string scheduler;  // empty: the folder's scheduler type (else ddpm)
  std::optional<double> eta;
  std::string timestep_spacing;  // empty: the folder's
  int64_t num = 16;
  int64_t batch = 16;
  uint64_t seed = 0;
  std::filesystem::path out = "samples.png";
  int64_t columns = 0;  // 0: ceil(sqrt(num))
  std::string device = "auto";
  // "auto", "bf16" or "fp32" (resolve_precision): bf16 builds the UNet with
  // bf16 activations (UNetBuildOptions::activations).
  std::string precision = "auto";
  // The CUDA backend's sampling loop: "auto" (loop where supported, else
  // step), "off", "step" or "loop" (engine/sampler.h's SamplingGraph).
  std::string graph = "auto";
  // The run's index of the first image: images [first_image, first_image +
  // num) of the seed's run, so a big job can be sharded.
  int64_t first_image = 0;
  // --profile-steps "A:B" (apps/profile_window.h): sampling steps counted over
  // the whole run, batch after batch; with graph loop, whole batches.
  std::string profile_steps;
  bool print_model = false;
};

int run_sampling(const SampleOptions& options);

}  // namespace ddpm::app
