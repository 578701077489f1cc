// One DDPM training step on a device: the Trainer (engine/trainer.h) decides
// which step and which images; a TrainingStep prepares the batch (flips,
// timesteps, q_sample, the target), runs the model's forward and backward on
// the executor and the optimizer step beside the parameters, and hands the
// steps' loss and gradient norm back when asked.
//
// Why an interface: where the batch is prepared and how the step is launched
// is the device's business. The CPU implementation here is the reference
// (the trainer's host path: the batch in double, one step at a time); the
// CUDA one (engine/cuda/device_training_step.h, in ddpm_cuda_backend, which
// ddpm_engine must not link) keeps the whole step on the device, captured as
// a CUDA graph, and returns from enqueue() before the GPU has run it. So the
// metrics are collected in bulk, when a log line needs them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/data/image_dataset.h"
#include "engine/executor.h"
#include "engine/parameter_updater.h"
#include "engine/scheduler.h"
#include "engine/train_config.h"
#include "engine/unet.h"

namespace ddpm {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, grad_norm = 0, learning_rate = 0, ema_decay = 0;
};

struct TrainingStepOptions {
  // CUDA: capture the whole step (batch, forward, loss, backward, clip, AdamW,
  // EMA) once as a CUDA graph and replay it (true), or launch the same kernels
  // one by one (false). Both give bitwise the same results. The CPU ignores it.
  bool graph = true;
  // CUDA: how many steps' metrics the device holds before the host must read
  // them (a wait for the GPU every that many steps when nobody collects).
  int64_t metrics_capacity = 4096;
};

// What a step runs on. Everything referenced outlives the TrainingStep.
struct TrainingStepContext {
  const TrainConfig& config;
  const ImageDataset& data;
  Backend& backend;
  Executor& executor;     // the training graph's, parameters initialised
  const UNetGraph& unet;  // its named values: sample, timesteps, target, loss
  const Scheduler& scheduler;
  OptimizerSettings optimizer;
  TrainingStepOptions options;
};

class TrainingStep {
 public:
  virtual ~TrainingStep() = default;

  // Runs (or enqueues) step `step` (1-based; one more than the previous
  // step, or than the step restore() set) on the dataset images `batch`.
  // `next_batch` are the images of the step after it when known (empty
  // otherwise): a device may gather them while this step runs.
  virtual void enqueue(int64_t step, std::span<const int64_t> batch,
                       std::span<const int64_t> next_batch) = 0;

  // The step, loss and gradient norm (before clipping) of every step enqueued
  // since the last call, in order; waits for them. learning_rate and
  // ema_decay are left 0 (the trainer knows them).
  virtual std::vector<StepMetrics> collect() = 0;

  // Continues from a checkpoint: the next enqueue() is step `step` + 1.
  // Metrics not yet collected are dropped.
  virtual void restore(int64_t step) = 0;

  // The optimizer state (host copies for checkpoints), and its restoration.
  virtual std::vector<float> read(ParameterUpdater::Slot slot) const = 0;
  virtual void write(ParameterUpdater::Slot slot, std::span<const float> values) = 0;
};

using TrainingStepFactory =
    std::function<std::unique_ptr<TrainingStep>(const TrainingStepContext& context)>;

// The CPU reference: the batch on the host in double (engine/cpu/diffusion.h),
// the CPU parameter updater. Synchronous. Throws std::invalid_argument for a
// backend other than the CPU's.
std::unique_ptr<TrainingStep> make_cpu_training_step(const TrainingStepContext& context);

}  // namespace ddpm
