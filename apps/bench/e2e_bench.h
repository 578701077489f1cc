// ddpm_cuda_bench --e2e: the whole app path timed, as ddpm_cuda_train and
// ddpm_cuda_sample run it (device by name, Trainer with its training step,
// the device's sampling loop), in each graph mode the device has:
//   - training img/s (graph off / on on CUDA; the host step on the CPU);
//   - sampling img/s for 1000 steps (graph off / step / loop on CUDA; the
//     host loop on the CPU), and img-steps/s;
//   - the latency of one sampling step at batch 1, per mode;
//   - kernel launches per step where the runtime counts them (the emulator),
//     and the kernel nodes of one captured UNet forward (any CUDA runtime);
//   - device memory in use per phase (cudaMemGetInfo; not under the emulator);
//   - whether the modes gave bitwise the same parameters / images.
// Every phase runs at one precision (--precision resolved: bf16 mixed
// precision or fp32), recorded in the result.
// The result is JSON (written with --json) and a table (e2e_report.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "engine/executor.h"

namespace ddpm::bench {

struct E2eOptions {
  std::filesystem::path config;  // a training config (model, scheduler, training)
  int64_t batch = 0;             // training batch; 0: the config's
  int64_t sample_batch = 0;      // sampling batch; 0: the training batch
  int64_t steps = 1000;          // sampling steps timed per mode (img/s scaled to 1000)
  int64_t train_steps = 10;      // training steps timed per mode
  int64_t warmup = 2;            // untimed training steps first (capture, first use)
  int64_t b1_steps = 50;         // batch-1 sampling steps timed per mode
  std::string device = "auto";
  // "auto", "bf16" or "fp32" (resolve_precision): the precision every phase
  // trains and samples in, reported as the result's "precision".
  std::string precision = "auto";
  // Training images: synthetic (random, the model's shape; no dataset needed:
  // the GPU machines have none) or the config's dataset.
  bool config_data = false;
  std::vector<std::string> phases{"train", "sample", "b1"};
};

// What the device runtime of this build can tell about itself. Members are
// empty where it cannot.
struct LaunchCounts {
  uint64_t kernels = 0;         // kernel grids run: eager and as graph nodes
  uint64_t launch_calls = 0;    // host launch calls: eager kernels + cudaGraphLaunch
  uint64_t graph_launches = 0;  // cudaGraphLaunch calls
  uint64_t host_syncs = 0;      // the host waiting for the device
};
struct DeviceProbes {
  std::string launches_how;  // where the counts come from ("" if nowhere)
  bool emulated = false;     // the CUDA runtime is the CPU emulator: times mean nothing
  std::function<void()> reset_counts;
  std::function<std::optional<LaunchCounts>()> counts;
  std::function<std::optional<double>()> memory_in_use_bytes;
  // Kernel nodes in one stream capture of `ex`'s forward (CUDA backend only).
  std::function<std::optional<int64_t>(Executor& ex)> forward_kernel_nodes;
};

// The probes of this build's runtime: bench/e2e_probes_cuda.cpp (CUDA, and
// the emulator's counters when compiled with DDPM_E2E_EMULATED) or
// bench/e2e_probes_none.cpp.
DeviceProbes device_probes();

// Runs the phases; progress lines go to `log`. Throws std::invalid_argument
// for bad options and whatever the engine throws.
nlohmann::json run_e2e_bench(const E2eOptions& options, const DeviceProbes& probes,
                             std::ostream& log);

}  // namespace ddpm::bench
