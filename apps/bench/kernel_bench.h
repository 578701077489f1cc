// The timing half of ddpm_cuda_bench: runs each layer shape through our
// kernels and the vendor libraries on the current GPU and renders the result
// as a markdown table (returned, and printed as it goes).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "apps/bench/model_shapes.h"

namespace ddpm::bench {

struct BenchOptions {
  int64_t batch = 128;
  int warmup = 3;
  int repeats = 10;
  std::vector<std::string> conv_impls{"simt", "tensor_core", "cudnn"};
  std::string model = "DDPM CIFAR-10 UNet";
};

// Throws std::runtime_error when there is no CUDA device.
std::string run_kernel_bench(const ModelShapes& shapes, const BenchOptions& options,
                             std::ostream& progress);

}  // namespace ddpm::bench
