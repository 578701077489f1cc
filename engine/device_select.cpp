#include "engine/device_select.h"

#include <stdexcept>

namespace ddpm {

Device select_device(const std::string& requested, std::ostream& log) {
  if (requested != "auto" && requested != "cpu" && requested != "cuda")
    throw std::invalid_argument("--device '" + requested + "': expected auto, cpu or cuda");
  if (requested == "cpu") {
    log << "device: cpu (requested)\n";
    return Device::cpu;
  }
  // auto and cuda both take a GPU when this build can drive one; without one
  // they run on the CPU, saying why (a CUDA request is not an error, so the
  // same command line works on a laptop and on the GPU machine).
  if (built_with_cuda() && cuda_device_count() > 0) {
    log << "device: cuda (" << (requested == "cuda" ? "requested" : "auto") << "; "
        << cuda_device_name() << ")\n";
    return Device::cuda;
  }
  const char* why = !built_with_cuda() ? "this build has no CUDA" : "no CUDA device found";
  log << "device: cpu (" << (requested == "cuda" ? "cuda requested, but " : "") << why << ")\n";
  return Device::cpu;
}

}  // namespace ddpm
