// The optimizer step on the CUDA backend (engine/parameter_updater.h's
// interface): the Adam moments and the EMA live in device memory beside the
// executor's parameter buffer, and a step is two launches of
// kernels/optimizer.cuh on the backend's stream: grad_norm (deterministic
// two-stage reduction) and adamw_ema_step (clip factor, warmup learning rate,
// AdamW and EMA fused, one pass over the buffers).
//
// Two ways to drive it:
//   - enqueue(): the step number is read from device memory and the norm is
//     written there; no host copy, no synchronisation, so it can be captured
//     in a CUDA graph (the device training step, engine/cuda/
//     device_training_step.h, does that);
//   - step() (the ParameterUpdater interface, for host-driven callers and the
//     golden tests): writes the step number, enqueues, and waits for the norm.
//
// Agreement with the CPU updater: the kernel runs the CPU's float formula per
// element with the step's scalars derived in double from the same double
// settings, and the clip factor from the float norm (the CPU's is a double).
// Results match the CPU to that rounding and the GPU's FMA contraction, not
// bitwise.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/cuda/cuda_backend.h"
#include "engine/parameter_updater.h"
#include "kernels/optimizer.cuh"

namespace ddpm {

class CudaParameterUpdater final : public ParameterUpdater {
 public:
  // `params`: the backend's f32 parameter buffer. Moments zero, EMA = params.
  CudaParameterUpdater(CudaBackend& backend, const Tensor& params,
                       const OptimizerSettings& settings);

  // Enqueues the step on the backend's stream: *norm (device memory) = the
  // gradients' global norm, then clipping, AdamW and the EMA with the step
  // number *step (device memory, >= 1). `params_bf16`, when defined (the
  // executor's parameter_copy() of a mixed-precision graph), receives the
  // updated weights in bf16 from the same kernel.
  void enqueue(const Tensor& params, const Tensor& grads, const uint32_t* step, float* norm,
               const Tensor& params_bf16 = {});

  double step(const Tensor& params, const Tensor& grads, int64_t step) override;
  std::vector<float> read(Slot slot) const override;
  void write(Slot slot, std::span<const float> values) override;

 private:
  // step()'s device-side scalars: what the kernels read (step) and write (norm).
  struct DeviceScalars {
    uint32_t step;
    float norm;
  };

  void check(const Tensor& t, const char* what) const;
  const DeviceBuffer& buffer(Slot s) const;

  CudaBackend& backend_;
  kernels::AdamWEmaConfig config_;
  int64_t n_;
  DeviceBuffer m_, v_, ema_, scalars_, workspace_;
};

// `backend` must be a CudaBackend and `params` its f32 parameter buffer;
// throws std::invalid_argument otherwise.
std::unique_ptr<CudaParameterUpdater> make_cuda_updater(Backend& backend, const Tensor& params,
                                                        const OptimizerSettings& settings);

// The same as a ParameterUpdaterFactory.
std::unique_ptr<ParameterUpdater> make_cuda_parameter_updater(Backend& backend,
                                                              const Tensor& params,
                                                              const OptimizerSettings& settings);

}  // namespace ddpm
