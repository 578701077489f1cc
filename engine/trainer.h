// DDPM training (Algorithm 1 of Ho et al. 2020): for each batch, t uniform
// over the training timesteps, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
// the UNet regressed on eps (or x0, or v) with MSE, then global-norm gradient
// clipping, AdamW with linear warmup, and an EMA of the weights. Every random
// draw is keyed on (seed, step, image), so a run resumed from a checkpoint
// continues bitwise as if never interrupted.
//
// Devices: the batch (images, flips, timesteps, the forward process in
// double) is prepared on the host and copied in each step; the UNet's forward
// and backward run on the backend, and the optimizer step on a
// ParameterUpdater next to the parameters (engine/parameter_updater.h), so on
// the CUDA backend parameters, gradients and optimizer state never leave the
// GPU except for checkpoints and sampling with the EMA weights.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <ostream>

#include "engine/data/batch_sampler.h"
#include "engine/data/image_dataset.h"
#include "engine/executor.h"
#include "engine/parameter_updater.h"
#include "engine/train_config.h"
#include "engine/unet.h"

namespace ddpm {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, learning_rate = 0, ema_decay = 0;
};

class Trainer {
 public:
  // Checks the dataset against the model config; initialises parameters from
  // the seed (PyTorch's default initialisation ranges), EMA = parameters.
  // The model runs on `backend`; the optimizer step on the updater that
  // `make_updater` creates for it. Without one, the CPU backend gets the CPU
  // updater, and any other backend is an error (the CUDA one comes from
  // engine/cuda/cuda_parameter_updater.h, which ddpm_engine does not link).
  Trainer(const TrainConfig& config, const ImageDataset& data, Backend& backend,
          const ParameterUpdaterFactory& make_updater = {});

  const TrainConfig& config() const { return config_; }
  const UNetGraph& unet() const { return unet_; }
  int64_t step() const { return step_; }

  // One optimisation step (step() + 1).
  StepMetrics train_step();

  // Host copies of the parameters and of their EMA.
  std::vector<float> parameters() const;
  std::vector<float> ema() const;

  // A checkpoint folder: a DDPMPipeline with the EMA weights (what
  // ddpm_cuda_sample and diffusers load) plus training_state.safetensors
  // (weights, EMA, Adam moments, step, data position) and train_config.json.
  // Written beside the target and swapped in, so an interrupted save keeps the
  // previous one.
  void save_checkpoint(const std::filesystem::path& dir) const;
  // Restores everything save_checkpoint wrote. Throws CheckpointError when the
  // checkpoint belongs to another model or is damaged.
  void resume(const std::filesystem::path& dir);

  // Samples `count` images with the EMA weights; returns NHWC floats.
  std::vector<float> sample_ema(int64_t count, int64_t steps, const std::string& scheduler_kind,
                                uint64_t seed) const;

 private:
  TrainConfig config_;
  const ImageDataset& data_;
  Backend& backend_;
  Scheduler scheduler_;
  UNetGraph unet_;
  std::unique_ptr<Executor> ex_;
  BatchSampler sampler_;
  std::unique_ptr<ParameterUpdater> updater_;  // Adam moments and EMA, beside the parameters
  std::vector<double> sqrt_abar_, sqrt_one_minus_abar_;  // the forward process's tables
  int64_t step_ = 0;
};

// Reads the training config stored in a checkpoint folder.
TrainConfig checkpoint_train_config(const std::filesystem::path& dir);

}  // namespace ddpm
