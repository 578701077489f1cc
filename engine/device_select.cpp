#include "engine/device_select.h"

#include <stdexcept>

#if DDPM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ddpm {

bool built_with_cuda() {
  return DDPM_HAVE_CUDA != 0;
}

int cuda_device_count() {
#if DDPM_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

std::string cuda_device_name() {
#if DDPM_HAVE_CUDA
  cudaDeviceProp prop{};
  if (cuda_device_count() > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess) return prop.name;
#endif
  return "";
}

Device select_device(const std::string& requested, std::ostream& log) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda")
    throw std::invalid_argument("--device '" + requested + "': expected auto, cpu or cuda");
  if (requested == "cpu") {
    log << "device: cpu (requested)\n";
    return Device::cpu;
  }
  const char* why = !built_with_cuda()         ? "this build has no CUDA"
                    : cuda_device_count() == 0 ? "no CUDA device found"
                                               : "the CUDA backend is not implemented yet";
  log << "device: cpu (" << (requested == "cuda" ? "cuda requested, but " : "") << why
      << (cuda_device_count() > 0 ? "; GPU present: " + cuda_device_name() : std::string())
      << ")\n";
  return Device::cpu;
}

}  // namespace ddpm
