// cudaProfilerStart / cudaProfilerStop (cuda_profiler_api.h) for emulated
// builds: there is no profiler to switch on, so they succeed and do nothing,
// as the real ones do when no tool is attached. With DDPM_EMU_TRACE_PROFILER
// set (to anything), each call writes a line to stderr, so a test can see
// where a program opens and closes its profiling window.
#include <cuda_profiler_api.h>

#include <cstdio>
#include <cstdlib>

namespace {

void trace(const char* call) {
  static const bool on = std::getenv("DDPM_EMU_TRACE_PROFILER") != nullptr;
  if (on) std::fprintf(stderr, "emulator: %s\n", call);
}

}  // namespace

cudaError_t cudaProfilerStart(void) {
  trace("cudaProfilerStart");
  return cudaSuccess;
}

cudaError_t cudaProfilerStop(void) {
  trace("cudaProfilerStop");
  return cudaSuccess;
}
