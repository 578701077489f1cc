// The training step on the CUDA backend (engine/training_step.h): the whole
// step on the GPU, with no host synchronisation inside it, captured once as
// a CUDA graph and replayed.
//
// One step, in stream order:
//   upload      the batch's images (uint8), gathered into pinned memory on a
//               host thread while the previous step ran (cuda/batch_uploader.h);
//               outside the graph: one cudaMemcpyAsync
//   --- the captured region (or the same launches eagerly, --graph off) ---
//   begin       the device step counter + 1; timesteps and flips drawn from it
//   batch       x_t and the target from the images (kernels/training_batch.cuh)
//   forward, loss, backward   the executor (dropout keyed on the device step)
//   optimizer   grad norm, clip, AdamW, EMA (cuda_parameter_updater.h), the
//               step number read from device memory
//   record      loss and grad norm into a device ring of per-step metrics
// The host reads the ring when the metrics are collected (a log line): one
// copy into pinned memory and one event wait for all the steps since.
//
// The graph is captured on the second step a process runs (the first, eager,
// warms up what runs lazily on first use: library handles and the like)
// after CudaBackend::reserve_workspace, and replayed for every step after;
// captured again only when the backend's workspace was reallocated (another
// graph on the backend, e.g. sampling at a larger batch, grew it).
// Kernel arguments are fixed at capture: everything that changes from step to
// step (the step number, the images) is read from device memory, so a replay
// equals an eager step bit for bit, and a resumed run only writes the step
// counter.
#pragma once

#include <memory>

#include "engine/training_step.h"

namespace ddpm {

// The CUDA training step for `context` (its backend a CudaBackend, its
// executor's buffers on it); throws std::invalid_argument otherwise.
std::unique_ptr<TrainingStep> make_cuda_training_step(const TrainingStepContext& context);

}  // namespace ddpm
