#include "engine/cpu/cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

#include "engine/cpu/ops.h"

namespace ddpm {

void* CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment: a cache line, and enough for any SIMD load.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!p)
    throw OutOfMemoryError("cpu backend: cannot allocate " + std::to_string(bytes >> 20) +
                           " MiB (" + std::to_string(available_memory() >> 20) + " MiB available)");
  return p;
}

// MemAvailable of /proc/meminfo (what the kernel can give without swapping).
size_t CpuBackend::available_memory() const {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return SIZE_MAX;
}

void CpuBackend::deallocate(void* p) noexcept {
  std::free(p);
}
void CpuBackend::fill_zero(void* p, size_t bytes) {
  std::memset(p, 0, bytes);
}
void CpuBackend::copy_from_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}
void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  std::memcpy(dst, src, bytes);
}

void CpuBackend::forward(const Node& node, const ForwardArgs& args) {
  try {
    std::visit([&](const auto& p) { cpu::forward(p, args); }, node.params);
  } catch (const std::exception& e) {
    throw std::runtime_error("cpu forward of " + std::string(op_name(node.params)) + " '" +
                             node.name + "': " + e.what());
  }
}

void CpuBackend::backward(const Node& node, const BackwardArgs& args) {
  try {
    std::visit([&](const auto& p) { cpu::backward(p, args); }, node.params);
  } catch (const std::exception& e) {
    throw std::runtime_error("cpu backward of " + std::string(op_name(node.params)) + " '" +
                             node.name + "': " + e.what());
  }
}

}  // namespace ddpm
