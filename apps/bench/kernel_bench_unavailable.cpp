// ddpm_cuda_bench in a build without the CUDA toolkit: --list still works,
// timing says why it cannot run.
#include <stdexcept>

#include "apps/bench/kernel_bench.h"

namespace ddpm::bench {

std::string run_kernel_bench(const ModelShapes&, const BenchOptions&, std::ostream&) {
  throw std::runtime_error(
      "this build has no CUDA kernels (configured without a CUDA toolkit); --list still works");
}

}  // namespace ddpm::bench
