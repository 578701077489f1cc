// A device by name: the one factory the apps use (`--device cpu|cuda|auto`),
// so that no app includes engine/cuda/. It returns the backend the executor
// runs on together with the device-specific parts of training and sampling
// (the device-resident training step; later the device-resident sampling
// loop). "auto" takes the GPU when this build has
// CUDA and one is usable, else the CPU, saying which and why; "cuda" on a
// machine where CUDA cannot start is an error naming the runtime's reason
// (no device, driver too old for this runtime, a build without CUDA), never a
// silent run on the CPU.
//
// Defined in the ddpm_runtime library: engine/cuda/device_runtime_cuda.cpp in
// CUDA builds (and, compiled against the kernel emulator, in the emulated
// apps), engine/device_runtime_cpu.cpp otherwise.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include "engine/backend.h"
#include "engine/sampler.h"
#include "engine/training_step.h"

namespace ddpm {

struct DeviceRuntimeOptions {
  // The CUDA backend's implementations (kernels/conv2d.cuh, kernels/gemm.cuh):
  // "simt" (exact fp32, the default), "tensor_core", "cudnn" / "cublas".
  std::string conv_impl = "simt";
  std::string gemm_impl = "simt";
};

struct DeviceRuntime {
  Device device = Device::cpu;
  std::string description;  // e.g. "cuda: NVIDIA H200 (sm_90)", "cpu"
  // Whether bf16 mixed precision runs here on tensor cores (a CUDA device of
  // compute capability >= 8.0): what `--precision auto` chooses.
  bool bf16_tensor_cores = false;
  std::unique_ptr<Backend> backend;
  // The training step's implementation for this backend (batch, model and
  // optimizer step; engine/training_step.h); empty on the CPU (the Trainer
  // then uses the CPU's).
  TrainingStepFactory make_training_step;
  // The sampling loop for this backend: the host loop on the CPU
  // (make_host_sampling_loop), the device loop with CUDA graphs on CUDA
  // (engine/cuda/device_sampler.h).
  SamplingLoopFactory make_sampling_loop;
};

// `name`: "auto", "cpu" or "cuda" (anything else: std::invalid_argument).
// Writes one line to `log` saying what was chosen and why. Throws
// std::runtime_error when "cuda" cannot start.
DeviceRuntime make_device_runtime(const std::string& name, std::ostream& log,
                                  const DeviceRuntimeOptions& options = {});

// Why CUDA cannot start here ("" when it can): "this build has no CUDA", or
// the runtime's error for the first device query (e.g. "cudaErrorNoDevice:
// no CUDA-capable device is detected").
std::string cuda_unavailable_reason();

// `--precision` of the apps: "auto" (bf16 where the runtime has bf16 tensor
// cores, else fp32), "bf16" (a CUDA device only: an error elsewhere, naming
// why) or "fp32". Returns "bf16" or "fp32" and says in `why` how it was chosen.
std::string resolve_precision(const std::string& requested, const DeviceRuntime& runtime,
                              std::string* why = nullptr);

}  // namespace ddpm
