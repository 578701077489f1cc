// DDPM training (Algorithm 1 of Ho et al. 2020): for each batch, t uniform
// over the training timesteps, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
// the UNet regressed on eps (or x0, or v) with MSE, then global-norm gradient
// clipping, AdamW with linear warmup, and an EMA of the weights. Every random
// draw is keyed on (seed, step, image), so a run resumed from a checkpoint
// continues bitwise as if never interrupted.
//
// Devices: the trainer owns the model (executor), the data order and the
// step count; a TrainingStep (engine/training_step.h) runs each step where
// the model lives. On the CPU backend that is the host path (the batch in
// double, one step at a time); on the CUDA backend the whole step runs on the
// GPU (engine/cuda/device_training_step.h), captured as a CUDA graph, and
// enqueue_step() returns before it has run: its loss and gradient norm come
// back in bulk from collect_metrics(). Parameters, gradients and optimizer
// state never leave the device except for checkpoints and sampling.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <ostream>

#include "engine/data/batch_sampler.h"
#include "engine/data/image_dataset.h"
#include "engine/executor.h"
#include "engine/parameter_updater.h"
#include "engine/sampler.h"
#include "engine/train_config.h"
#include "engine/training_step.h"
#include "engine/unet.h"

namespace ddpm {

class Trainer {
 public:
  // Checks the dataset against the model config; initialises parameters from
  // the seed (PyTorch's default initialisation ranges), EMA = parameters.
  // The model runs on `backend`; each step on the TrainingStep that
  // `make_step` creates for it (make_device_runtime gives the backend's).
  // Without one, the CPU backend gets the CPU step, and any other backend is
  // an error (the CUDA one comes from engine/cuda/device_training_step.h,
  // which ddpm_engine does not link).
  Trainer(const TrainConfig& config, const ImageDataset& data, Backend& backend,
          const TrainingStepFactory& make_step = {}, const TrainingStepOptions& options = {});
  // The executor and the training step hold references into the trainer.
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  const TrainConfig& config() const { return config_; }
  const UNetGraph& unet() const { return unet_; }
  // Steps enqueued so far (or resumed from).
  int64_t step() const { return step_; }

  // Enqueues one optimisation step (step() + 1). On a device it may return
  // before the step has run; its metrics come from collect_metrics().
  void enqueue_step();
  // The metrics of every step enqueued since the last call, in order, read in
  // one transfer (waits for them).
  std::vector<StepMetrics> collect_metrics();
  // One step and its metrics (enqueue_step, then the last of collect_metrics).
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
  // Restores everything save_checkpoint wrote (metrics not yet collected are
  // dropped). Throws CheckpointError when the checkpoint belongs to another
  // model or is damaged.
  void resume(const std::filesystem::path& dir);

  // --check-numerics: the training executor checks every op's output and
  // gradient (Executor::set_check_numerics); on CUDA only with the step
  // launched eagerly (TrainingStepOptions::graph false).
  void set_check_numerics(bool on) { ex_->set_check_numerics(on); }

  // How sample_ema runs its loop: the host loop (the default, any backend)
  // or a device's (DeviceRuntime::make_sampling_loop: on CUDA, the whole loop
  // on the GPU).
  void set_sampling_loop(SamplingLoopFactory make_loop) {
    make_sampling_loop_ = std::move(make_loop);
  }

  // Samples `count` images with the EMA weights; returns NHWC floats.
  std::vector<float> sample_ema(int64_t count, int64_t steps, const std::string& scheduler_kind,
                                uint64_t seed) const;

 private:
  void write_checkpoint_files(const std::filesystem::path& folder) const;

  TrainConfig config_;
  const ImageDataset& data_;
  Backend& backend_;
  Scheduler scheduler_;
  UNetGraph unet_;
  std::unique_ptr<Executor> ex_;
  // The data order: sampler_ has drawn the batches of the steps enqueued and
  // one more (next_batch_, which a device gathers while the step before it
  // runs); data_position_ is its state after the last enqueued step's batch,
  // what a checkpoint saves.
  BatchSampler sampler_;
  SamplerState data_position_;
  std::vector<int64_t> next_batch_;
  std::unique_ptr<TrainingStep> step_impl_;  // batch, model, optimizer state
  int64_t step_ = 0;
  SamplingLoopFactory make_sampling_loop_ = make_host_sampling_loop;
};

// Reads the training config stored in a checkpoint folder.
TrainConfig checkpoint_train_config(const std::filesystem::path& dir);

// A save interrupted between its two renames (save_checkpoint moves `dir` to
// `dir`.old, then the new one from `dir`.tmp to `dir`) leaves no `dir` but a
// complete `dir`.old: this puts it back and returns a message saying so
// (empty when there was nothing to do). `dir`.tmp, possibly half-written, is
// never used.
std::string recover_interrupted_checkpoint(const std::filesystem::path& dir);

}  // namespace ddpm
