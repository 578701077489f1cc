// Device memory for the kernel benchmark: an owning cudaMalloc, filled with
// small random values (uniform in [-1, 1): the time of fp32 FMA and
// tensor-core kernels does not depend on the data, but NaNs or denormals
// could), and read back as floats for the bf16 rows' checks.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "engine/checkpoint/half_float.h"
#include "engine/random.h"
#include "kernels/check.cuh"

namespace ddpm::bench {

enum class Element { f32, bf16 };

inline size_t element_bytes(Element e) {
  return e == Element::f32 ? 4 : 2;
}

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) {
    if (bytes) DDPM_CUDA_CHECK(cudaMalloc(&p_, bytes));
  }
  DeviceBuffer(DeviceBuffer&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(p_, other.p_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  void* p_ = nullptr;
};

// `count` elements of type `e`, uniform in [-1, 1) from `seed`. With
// bf16_values each is rounded to bf16 first, so an fp32 and a bf16 buffer of
// the same seed hold the same numbers (the bf16 rows' fp32 reference then sees
// exactly our bf16 kernels' inputs). One block of 2^20 draws, tiled: drawing
// 10^8 values one by one would take longer than the timing itself.
inline DeviceBuffer random_buffer(size_t count, uint64_t seed, Element e, bool bf16_values) {
  DeviceBuffer b(count * element_bytes(e));
  if (count == 0) return b;
  const size_t block = std::min<size_t>(count, size_t(1) << 20);
  std::vector<float> f32(e == Element::f32 ? block : 0);
  std::vector<uint16_t> b16(e == Element::bf16 ? block : 0);
  Philox rng(seed, 11);
  for (size_t i = 0; i < block; ++i) {
    float v = float(2 * rng.uniform() - 1);
    const uint16_t bits = f32_to_bf16_bits(v);
    if (bf16_values || e == Element::bf16) v = bf16_bits_to_f32(bits);
    if (e == Element::f32)
      f32[i] = v;
    else
      b16[i] = bits;
  }
  const void* src = e == Element::f32 ? static_cast<const void*>(f32.data()) : b16.data();
  const size_t bytes = element_bytes(e);
  for (size_t at = 0; at < count; at += block) {
    const size_t n = std::min(block, count - at);
    DDPM_CUDA_CHECK(cudaMemcpy(static_cast<char*>(b.get()) + at * bytes, src, n * bytes,
                               cudaMemcpyHostToDevice));
  }
  return b;
}

// The first `count` elements of `b` (of type `e`), as floats (bf16 widens exactly).
inline std::vector<float> download(const DeviceBuffer& b, size_t count, Element e) {
  std::vector<float> out(count);
  if (count == 0) return out;
  if (e == Element::f32) {
    DDPM_CUDA_CHECK(cudaMemcpy(out.data(), b.get(), count * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<uint16_t> bits(count);
  DDPM_CUDA_CHECK(cudaMemcpy(bits.data(), b.get(), count * 2, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < count; ++i) out[i] = bf16_bits_to_f32(bits[i]);
  return out;
}

}  // namespace ddpm::bench
