// The smoke run: a tiny denoiser that uses every op, trained with AdamW to
// predict the noise of the DDPM forward process on synthetic smooth images.
// Seconds on a CPU; it proves the whole engine path works.
#pragma once

#include <cstdint>
#include <string>

namespace ddpm::app {

struct SmokeOptions {
  int steps = 150;
  int64_t batch = 8;
  int64_t size = 16;
  double lr = 2e-3;
  uint64_t seed = 0;
  int log_every = 10;
  std::string device = "auto";
};

int run_smoke(const SmokeOptions& options);

}  // namespace ddpm::app
