// The device-specific half of make_device_runtime (engine/device_runtime.h).
#pragma once

#include "engine/device_runtime.h"

namespace ddpm::detail {

// The CUDA backend and its parts; only called when cuda_unavailable_reason()
// is empty. Throws std::invalid_argument for an unknown or unavailable
// implementation name in `options`.
DeviceRuntime make_cuda_runtime(const DeviceRuntimeOptions& options);

}  // namespace ddpm::detail
