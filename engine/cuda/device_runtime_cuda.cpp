// make_device_runtime's CUDA half: why CUDA cannot start (the runtime's own
// error), and the CUDA backend with its device-side parts.
#include <cuda_runtime_api.h>

#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_sampler.h"
#include "engine/cuda/device_training_step.h"
#include "engine/device_runtime_internal.h"

namespace ddpm {

namespace {

std::string runtime_error_text(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

}  // namespace

std::string cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error ("no driver", "driver too old")
    return "cudaGetDeviceCount failed: " + runtime_error_text(e);
  }
  if (count == 0) return "no CUDA device is visible";
  return "";
}

namespace detail {

DeviceRuntime make_cuda_runtime(const DeviceRuntimeOptions& options) {
  CudaBackendOptions o;
  o.conv = kernels::parse_conv_impl(options.conv_impl);
  o.gemm = kernels::parse_gemm_impl(options.gemm_impl);
  cudaDeviceProp prop{};
  const cudaError_t e = cudaGetDeviceProperties(&prop, 0);
  if (e != cudaSuccess)
    throw std::runtime_error("--device cuda: cudaGetDeviceProperties failed: " +
                             runtime_error_text(e));
  DeviceRuntime r;
  r.device = Device::cuda;
  r.description = std::string("cuda: ") + prop.name + " (sm_" + std::to_string(prop.major) +
                  std::to_string(prop.minor) + ")";
  r.bf16_tensor_cores = prop.major >= 8;
  r.backend = std::make_unique<CudaBackend>(o);
  r.make_training_step = make_cuda_training_step;
  r.make_sampling_loop = make_cuda_sampling_loop;
  return r;
}

}  // namespace detail
}  // namespace ddpm
