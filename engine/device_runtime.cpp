// make_device_runtime: the name resolved to a device; the device's parts come
// from make_cuda_runtime (engine/cuda/device_runtime_cuda.cpp, or
// device_runtime_none.cpp in builds without CUDA).
#include "engine/device_runtime.h"

#include <stdexcept>

#include "engine/cpu/cpu_backend.h"
#include "engine/device_runtime_internal.h"

namespace ddpm {

namespace {

DeviceRuntime make_cpu_runtime() {
  DeviceRuntime r;
  r.device = Device::cpu;
  r.description = "cpu";
  r.backend = std::make_unique<CpuBackend>();
  r.make_sampling_loop = make_host_sampling_loop;
  return r;
}

}  // namespace

DeviceRuntime make_device_runtime(const std::string& name, std::ostream& log,
                                  const DeviceRuntimeOptions& options) {
  if (name != "auto" && name != "cpu" && name != "cuda")
    throw std::invalid_argument("--device '" + name + "': expected auto, cpu or cuda");
  if (name == "cpu") {
    log << "device: cpu (requested)\n";
    return make_cpu_runtime();
  }
  const std::string why_not = cuda_unavailable_reason();
  if (why_not.empty()) {
    DeviceRuntime r = detail::make_cuda_runtime(options);
    log << "device: " << r.description << " (" << (name == "cuda" ? "requested" : "auto") << ")\n";
    return r;
  }
  if (name == "cuda") throw std::runtime_error("--device cuda: CUDA cannot start: " + why_not);
  log << "device: cpu (auto: " << why_not << ")\n";
  return make_cpu_runtime();
}

}  // namespace ddpm

namespace ddpm {

std::string resolve_precision(const std::string& requested, const DeviceRuntime& runtime,
                              std::string* why) {
  std::string chosen, reason;
  if (requested == "fp32") {
    chosen = "fp32";
    reason = "requested";
  } else if (requested == "bf16") {
    if (runtime.device != Device::cuda)
      throw std::invalid_argument("--precision bf16 needs a CUDA device; the " +
                                  runtime.description +
                                  " backend computes in fp32 (use --precision fp32 or auto)");
    chosen = "bf16";
    reason = runtime.bf16_tensor_cores ? "requested"
                                       : "requested; this GPU has no bf16 tensor cores "
                                         "(compute capability < 8.0), so it runs slowly";
  } else if (requested == "auto") {
    chosen = runtime.bf16_tensor_cores ? "bf16" : "fp32";
    reason = runtime.bf16_tensor_cores
                 ? "auto: a GPU with bf16 tensor cores"
                 : (runtime.device == Device::cuda ? "auto: this GPU has no bf16 tensor cores"
                                                   : "auto: the CPU computes in fp32");
  } else {
    throw std::invalid_argument("--precision: \"" + requested +
                                "\" is not one of auto, bf16, fp32");
  }
  if (why) *why = reason;
  return chosen;
}

}  // namespace ddpm
