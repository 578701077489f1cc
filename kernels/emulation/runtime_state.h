// What the emulated launch and the emulated runtime API share: the last error of
// each host thread, and the per-kernel attributes set by cudaFuncSetAttribute.
// Internal to the runtime.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace ddpm::emu::detail {

// Sets the calling host thread's last error (what cudaGetLastError returns)
// and the detail ddpm::emu::last_error_detail() returns.
void record_launch_error(cudaError_t code, const std::string& detail);

// The dynamic shared memory a kernel may request: 48 KB, or what
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n) allowed.
std::size_t max_dynamic_shared_bytes(const void* kernel);

// The default stream, cudaStreamLegacy / cudaStreamPerThread, or one created
// by cudaStreamCreate and not destroyed.
bool is_known_stream(cudaStream_t stream);

// Limits of the emulated device (an H100 / H200).
constexpr std::size_t kDefaultDynamicSharedBytes = 48 * 1024;
constexpr std::size_t kMaxSharedBytesPerBlock = 227 * 1024;  // sharedMemPerBlockOptin
constexpr int kMultiprocessors = 132;

}  // namespace ddpm::emu::detail
