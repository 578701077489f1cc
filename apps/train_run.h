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
  bool print_model = false;
};

int run_training(const TrainOptions& options);

}  // namespace ddpm::app
