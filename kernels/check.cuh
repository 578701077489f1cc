// Error checking for CUDA runtime calls and kernel launches: throws with the
// call, the file and the line (library code throws; apps catch at main).
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace ddpm::kernels {

inline void cuda_check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ") in " + call + " at " + file + ":" +
                             std::to_string(line));
}

}  // namespace ddpm::kernels

#define DDPM_CUDA_CHECK(call) ::ddpm::kernels::cuda_check((call), #call, __FILE__, __LINE__)
