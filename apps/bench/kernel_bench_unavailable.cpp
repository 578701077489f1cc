// ddpm_cuda_bench where the kernel timings cannot run: a build without the
// CUDA toolkit, or the emulated bench (CPU emulator: no GPU times). --list and
// --e2e still work; timing says why it cannot run (DDPM_KERNEL_BENCH_UNAVAILABLE,
// set by apps/CMakeLists.txt).
#include <stdexcept>
#include <string>

#include "apps/bench/kernel_bench.h"

#ifndef DDPM_KERNEL_BENCH_UNAVAILABLE
#define DDPM_KERNEL_BENCH_UNAVAILABLE "this build cannot time the kernels"
#endif

namespace ddpm::bench {

KernelBenchResult run_kernel_bench(const ModelShapes&, const BenchOptions&, std::ostream&) {
  throw std::runtime_error(std::string(DDPM_KERNEL_BENCH_UNAVAILABLE) +
                           "; --list and --e2e still work");
}

}  // namespace ddpm::bench
