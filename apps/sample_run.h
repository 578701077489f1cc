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
  bool print_model = false;
};

int run_sampling(const SampleOptions& options);

}  // namespace ddpm::app
