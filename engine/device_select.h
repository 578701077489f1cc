// Choosing where to run: apps name a device ("auto", "cpu", "cuda"); "auto"
// and "cuda" pick the CUDA backend when this build has CUDA and a device is
// visible, and otherwise fall back to the CPU, saying so. The caller then
// builds the backend (apps link ddpm_cuda_backend in CUDA builds).
#pragma once

#include <ostream>
#include <string>

#include "engine/tensor.h"

namespace ddpm {

// Defined in engine/cuda/device_query.cpp (CUDA builds) or
// device_query_none.cpp, in the ddpm_device library, so that ddpm_engine
// itself never links the CUDA runtime.
// Number of CUDA devices visible; 0 in a build without CUDA or with no driver.
int cuda_device_count();
// The CUDA device's name, or "" where there is none.
std::string cuda_device_name();
bool built_with_cuda();

// Throws std::invalid_argument for an unknown name. `log` receives one line
// saying what was chosen and why. Returns Device::cuda only where
// built_with_cuda() and cuda_device_count() > 0.
Device select_device(const std::string& requested, std::ostream& log);

}  // namespace ddpm
