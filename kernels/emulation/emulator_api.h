// Host-side control of the CUDA kernel emulator: its configuration, its
// counters, and the error an emulated launch throws when a kernel breaks a rule
// the emulator checks. Plain C++; includable from any file of a test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace ddpm::emu {

// Thrown (synchronously, by the launch) when a kernel does something the
// emulator detects: a divergent __syncthreads, a warp operation with a bad mask
// or reached by only part of its mask, a shuffle reading a lane outside the
// mask, __trap(), or an exception escaping the kernel. The message names the
// kernel, the block and the threads involved. Bad launch configurations are not
// thrown: they are reported through cudaGetLastError, as on a GPU.
class KernelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// OS threads that run the blocks of a grid. Default: the DDPM_EMU_WORKERS
// environment variable, else std::thread::hardware_concurrency() (at least 1).
// Takes effect at the next launch.
void set_worker_count(int count);
int worker_count();

// Stack bytes of each CUDA thread's fiber (rounded up to whole pages; a guard
// page sits below each stack). Default: DDPM_EMU_STACK_KB kilobytes, else 64 KB
// (256 KB in AddressSanitizer builds, whose frames are larger).
void set_fiber_stack_bytes(std::size_t bytes);
std::size_t fiber_stack_bytes();

// How fibers switch in this build: "x86-64 asm", or "ucontext" (the portable
// fallback, chosen with DDPM_EMU_FIBER_UCONTEXT=1 or off x86-64).
const char* fiber_implementation();

// Why the last failing emulated CUDA call (a rejected launch, a cudaMemcpy
// with a host pointer as its device side, ...) failed; cudaGetLastError gives
// only the code. Example: "block (1025,1,1) has 1025 threads; the limit is 1024".
std::string last_error_detail();

// Work done since the last reset: what the emulation costs, and what a GPU
// would have been asked to do (launches per step, host synchronisations), so
// tests can assert it.
struct Stats {
  std::uint64_t launches = 0;  // kernel grids run: eager launches and graph kernel nodes
  std::uint64_t blocks = 0;
  std::uint64_t fiber_switches = 0;  // one per baton hand-off between CUDA threads
  // CUDA graphs and stream capture.
  std::uint64_t graph_launches = 0;         // cudaGraphLaunch calls that ran a graph
  std::uint64_t graph_kernel_launches = 0;  // of `launches`, those run as graph nodes
  std::uint64_t captured_launches = 0;      // kernel launches recorded by stream capture
  std::uint64_t conditional_bodies = 0;     // conditional body runs (WHILE iterations, ...)
  // The host waiting for the device: cudaStreamSynchronize, cudaDeviceSynchronize,
  // cudaEventSynchronize, synchronous copies (cudaMemcpy, cudaMemcpy{To,From}Symbol)
  // and cudaMemcpyAsync from the device to pageable (not cudaMallocHost'd) host
  // memory, which returns only once the copy is done. Graph nodes never count.
  std::uint64_t host_synchronizations = 0;
  std::uint64_t memcpys = 0;         // copies run: eager, async and graph nodes
  std::uint64_t memsets = 0;         // sets run: eager, async and graph nodes
  std::uint64_t host_functions = 0;  // cudaLaunchHostFunc calls and host nodes run
};
Stats stats();
void reset_stats();

}  // namespace ddpm::emu
