// Device discovery in a build without a CUDA toolkit: there is no device.
#include <string>

namespace ddpm {

bool built_with_cuda() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_device_name() {
  return "";
}

}  // namespace ddpm
