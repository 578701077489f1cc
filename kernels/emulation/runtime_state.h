// What the parts of the emulated runtime share: the last error of each host
// thread, kernel attributes, streams, the allocation registries, running a
// grid, and the counters of emulator_api.h. Internal to the runtime.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "emulator.h"

namespace ddpm::emu::detail {

// Sets the calling host thread's last error (what cudaGetLastError returns)
// and the detail ddpm::emu::last_error_detail() returns.
void record_launch_error(cudaError_t code, const std::string& detail);

// record_launch_error, then returns `code`: `return fail(code, why);`.
cudaError_t fail(cudaError_t code, const std::string& detail);

// The dynamic shared memory a kernel may request: 48 KB, or what
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n) allowed.
std::size_t max_dynamic_shared_bytes(const void* kernel);

// The default stream, cudaStreamLegacy / cudaStreamPerThread, or one created
// by cudaStreamCreate and not destroyed.
bool is_known_stream(cudaStream_t stream);

// The legacy default stream: 0 or cudaStreamLegacy.
inline bool is_legacy_stream(cudaStream_t stream) {
  return stream == nullptr || stream == cudaStreamLegacy;
}

// Whether the legacy stream waits for `stream` (and the other way round):
// every stream but those created with cudaStreamNonBlocking, including
// cudaStreamPerThread.
bool is_blocking_stream(cudaStream_t stream);

// Whether [p, p + bytes) lies inside one cudaMalloc (or cudaMallocManaged)
// allocation, or inside one cudaMallocHost / cudaHostAlloc block.
bool inside_device_allocation(const void* p, std::size_t bytes);
bool inside_pinned_host_allocation(const void* p, std::size_t bytes);

// Runs every block of a grid whose configuration was checked, on the worker
// pool, and waits; `in_graph`: as a graph's kernel node. Throws KernelError.
void run_grid(const KernelBody& body, dim3 grid, dim3 block, std::size_t shmem_bytes,
              bool in_graph);

// The counters of Stats that are not the grid launcher's own.
enum class Counter {
  kGraphLaunches,
  kCapturedLaunches,
  kConditionalBodies,
  kHostSynchronizations,
  kMemcpys,
  kMemsets,
  kHostFunctions,
};
void tally(Counter counter);

// Limits of the emulated device (an H100 / H200).
constexpr std::size_t kDefaultDynamicSharedBytes = 48 * 1024;
constexpr std::size_t kMaxSharedBytesPerBlock = 227 * 1024;  // sharedMemPerBlockOptin
constexpr int kMultiprocessors = 132;

}  // namespace ddpm::emu::detail
