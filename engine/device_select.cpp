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
  const char* why = !built_with_cuda()         ? "this build has no CUDA"
                    : cuda_device_count() == 0 ? "no CUDA device found"
                                               : "the CUDA backend is not implemented yet";
  log << "device: cpu (" << (requested == "cuda" ? "cuda requested, but " : "") << why
      << (cuda_device_count() > 0 ? "; GPU present: " + cuda_device_name() : std::string())
      << ")\n";
  return Device::cpu;
}

}  // namespace ddpm
