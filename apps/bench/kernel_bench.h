// The timing half of ddpm_cuda_bench: runs each layer shape through our
// kernels and the vendor libraries on the current GPU and renders the result
// as markdown tables (returned, and printed as it goes): the fp32
// implementations, then (bf16, the default) our bf16 kernels against cuDNN /
// cuBLAS in bf16 with a check of our outputs (kernel_bench_bf16.h).
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
  bool bf16 = true;  // also the bf16 rows
  std::string model = "DDPM CIFAR-10 UNet";
};

struct KernelBenchResult {
  std::string table;   // markdown
  int mismatches = 0;  // bf16 rows whose output disagreed with the reference's
  int failures = 0;    // bf16 rows where our bf16 kernel failed
};

// Throws std::runtime_error when there is no CUDA device.
KernelBenchResult run_kernel_bench(const ModelShapes& shapes, const BenchOptions& options,
                                   std::ostream& progress);

}  // namespace ddpm::bench
