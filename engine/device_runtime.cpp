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
