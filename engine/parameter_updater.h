// The optimizer step of training on whatever device holds the parameters:
// the global gradient norm, global-norm clipping, AdamW with linear warmup and
// the EMA of the weights, over the executor's flat parameter and gradient
// buffers. The trainer owns one and never touches parameter memory itself, so
// the same Trainer runs on the CPU backend and on the CUDA backend.
//
// Why an interface of its own rather than methods on Backend: the optimizer
// state (Adam moments, EMA) lives beside the parameters on the device, and its
// CUDA implementation calls the runtime and kernels/optimizer.cuh, which
// ddpm_engine must not link. The CPU implementation is here (the reference:
// engine/cpu/optimizer.h, the exact code the trainer always ran); the CUDA
// one is engine/cuda/cuda_parameter_updater.h in ddpm_cuda_backend, handed
// to the Trainer as a factory by whoever chose the CUDA backend.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/optimizer.h"
#include "engine/ema_schedule.h"

namespace ddpm {

struct OptimizerSettings {
  AdamWConfig adam;           // adam.lr: the peak learning rate
  int64_t warmup_steps = 0;   // lr * min(1, step / warmup_steps) when > 0
  double grad_clip_norm = 0;  // > 0: torch.nn.utils.clip_grad_norm_(max_norm)
  EmaSchedule ema;            // the EMA's decay at each step (engine/ema_schedule.h)
};

// The learning rate of a (1-based) step under the warmup.
double warmup_learning_rate(const OptimizerSettings& s, int64_t step);

class ParameterUpdater {
 public:
  // The state buffers beside the parameters, each as many floats as the
  // parameter buffer.
  enum class Slot { adam_m, adam_v, ema };

  virtual ~ParameterUpdater() = default;

  // One step (`step` counts from 1) on the backend's flat buffers: returns the
  // gradients' global L2 norm (before clipping), then scales the gradients by
  // min(1, clip / (norm + 1e-6)), applies AdamW to params and moves the EMA
  // towards the new params with the step's decay, ema_decay_at(settings.ema, step).
  // A non-finite norm (a NaN or inf gradient) changes nothing (parameters,
  // moments, EMA): the trainer sees it in the returned norm and stops the run.
  virtual double step(const Tensor& params, const Tensor& grads, int64_t step) = 0;

  // Copies of the state for checkpoints (host floats), and their restoration.
  virtual std::vector<float> read(Slot slot) const = 0;
  virtual void write(Slot slot, std::span<const float> values) = 0;
};

// Creates the updater for `params` (the executor's parameter buffer on
// `backend`): moments zero, EMA = the current parameters.
using ParameterUpdaterFactory = std::function<std::unique_ptr<ParameterUpdater>(
    Backend& backend, const Tensor& params, const OptimizerSettings& settings)>;

// The CPU updater (host memory: the CPU backend's buffers). Throws
// std::invalid_argument for parameters not in f32 CPU memory.
std::unique_ptr<ParameterUpdater> make_cpu_parameter_updater(Backend& backend, const Tensor& params,
                                                             const OptimizerSettings& settings);

}  // namespace ddpm
