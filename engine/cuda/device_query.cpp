// CUDA device discovery through the runtime API (builds with a CUDA toolkit).
#include <cuda_runtime_api.h>

#include <string>

namespace ddpm {

bool built_with_cuda() {
  return true;
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string cuda_device_name() {
  cudaDeviceProp prop{};
  if (cuda_device_count() > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess) return prop.name;
  return "";
}

}  // namespace ddpm
