// The optimizer step on the CUDA backend (engine/parameter_updater.h's
// interface): the Adam moments and the EMA live in device memory beside the
// executor's parameter buffer, and a step is two launches of
// kernels/optimizer.cuh on the backend's stream: grad_norm (deterministic
// two-stage reduction) and adamw_ema_step (clip factor, warmup learning rate,
// AdamW and EMA fused, one pass over the buffers). The host only writes the
// step number (4 bytes) and reads the norm back (4 bytes) for the metrics.
//
// Agreement with the CPU updater: the kernel runs the CPU's float formula per
// element with the step's scalars derived in double from the same double
// settings, and the clip factor from the float norm (the CPU's is a double).
// Results match the CPU to that rounding and the GPU's FMA contraction, not
// bitwise.
#pragma once

#include <memory>

#include "engine/parameter_updater.h"

namespace ddpm {

// `backend` must be a CudaBackend and `params` its f32 parameter buffer;
// throws std::invalid_argument otherwise. Moments zero, EMA = params.
std::unique_ptr<ParameterUpdater> make_cuda_parameter_updater(Backend& backend,
                                                              const Tensor& params,
                                                              const OptimizerSettings& settings);

}  // namespace ddpm
