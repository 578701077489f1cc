// make_device_runtime's device half in a build without CUDA: there is none.
#include <stdexcept>

#include "engine/device_runtime_internal.h"

namespace ddpm {

std::string cuda_unavailable_reason() {
  return "this build has no CUDA (configured without a CUDA toolkit)";
}

namespace detail {

DeviceRuntime make_cuda_runtime(const DeviceRuntimeOptions&) {
  throw std::logic_error("make_cuda_runtime: this build has no CUDA");
}

}  // namespace detail
}  // namespace ddpm
