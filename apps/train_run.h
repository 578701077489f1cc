// A DDPM training run from a config: dataset, trainer, metrics log, sample
// grids, checkpoints, Ctrl-C handling.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace ddpm::app {

struct TrainOptions {
  std::filesystem::path config;      // empty: the config stored in --resume's checkpoint
  std::filesystem::path resume;      // a checkpoint folder, or a run folder holding checkpoint/
  std::filesystem::path out;         // empty: runs/<config name>, or the resumed run's folder
  std::string data_path, data_kind;  // override the config's dataset
  std::optional<int64_t> steps, batch;
  std::optional<uint64_t> seed;
  std::string device = "auto";
  // --precision: "auto", "bf16" or "fp32", resolved against the device
  // (resolve_precision) into config.training.precision before the Trainer
  // is built; it overrides the config's and, on --resume, the checkpoint's.
  std::string precision = "auto";
  // CUDA: the whole training step captured once as a CUDA graph and replayed
  // (true), or launched eagerly; bitwise the same results. The CPU ignores it.
  bool graph = true;
  // "A:B": training steps A to B between cudaProfilerStart/Stop
  // (apps/profile_window.h); empty: no window.
  std::string profile_steps;
  // Check every op's output and gradient for NaN/inf, naming the first op
  // that writes one (slow: a host copy after every op; the graph is off).
  bool check_numerics = false;
  bool print_model = false;
};

int run_training(const TrainOptions& options);

}  // namespace ddpm::app
