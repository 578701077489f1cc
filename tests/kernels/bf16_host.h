// Host-side bf16 helpers of the bf16 kernel tests: rounding
// to bf16 independent of the CUDA headers (the oracle should not share the
// kernels' conversion code), bf16 device arrays with an element offset (offset
// 1 breaks 16-byte alignment: the kernels' scalar path), poisoned with 0xFF
// bytes (NaN in bf16 and fp32) so an unwritten output shows.
#pragma once

#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {

constexpr double kU = 0x1p-24;     // fp32 unit roundoff
constexpr double kUBf16 = 0x1p-8;  // bf16 unit roundoff (8 significant bits)
// Half the spacing of bf16's subnormals (2^-133): the absolute rounding error
// near zero, where the relative bound does not hold.
constexpr double kBf16Tiny = 0x1p-134;

// Round to nearest, ties to even (finite inputs), as cvt.rn.bf16.f32.
inline uint16_t to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}
inline float from_bf16(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline float round_bf16(float f) {
  return from_bf16(to_bf16(f));
}

// n draws of scale * N(0, 1) + offset rounded to bf16 (as floats: exact).
inline std::vector<float> random_bf16_values(size_t n, uint64_t seed, double scale = 1.0,
                                             double offset = 0.0) {
  std::vector<float> v = random_floats(n, seed, scale);
  for (float& x : v) x = round_bf16(float(x + offset));
  return v;
}

// A device array of T (float or __nv_bfloat16) starting `offset` elements into
// its allocation. Built from float values (rounded to bf16 for bf16; exact for
// values that are already bf16); without values it is poisoned. Empty values
// give a null pointer.
template <class T>
class DeviceVec {
 public:
  DeviceVec(size_t n, size_t offset) : mem_(n ? n + offset : 0), offset_(offset), n_(n) {}
  DeviceVec(const std::vector<float>& host, size_t offset) : DeviceVec(host.size(), offset) {
    upload(host);
  }
  T* get() const { return n_ ? mem_.get() + offset_ : nullptr; }
  void upload(const std::vector<float>& host) {
    ASSERT_EQ(host.size(), n_);
    if (n_ == 0) return;
    std::vector<T> all(n_ + offset_);
    std::memset(static_cast<void*>(all.data()), 0xFF, all.size() * sizeof(T));
    for (size_t i = 0; i < n_; ++i) all[offset_ + i] = encode(host[i]);
    mem_.upload(all);
  }
  std::vector<float> download() const {
    if (n_ == 0) return {};
    const std::vector<T> all = mem_.download();
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = decode(all[offset_ + i]);
    return v;
  }
  void poison() { mem_.poison(); }

 private:
  static T encode(float f) {
    if constexpr (sizeof(T) == 2) {
      const uint16_t b = to_bf16(f);
      T t;
      std::memcpy(static_cast<void*>(&t), &b, 2);
      return t;
    } else {
      return f;
    }
  }
  static float decode(const T& t) {
    if constexpr (sizeof(T) == 2) {
      uint16_t b;
      std::memcpy(&b, static_cast<const void*>(&t), 2);
      return from_bf16(b);
    } else {
      return t;
    }
  }
  DeviceArray<T> mem_;
  size_t offset_, n_;
};

using DeviceBf16 = DeviceVec<__nv_bfloat16>;
using DeviceF32 = DeviceVec<float>;

// A bf16 output's bound: the fp32 computation's error e, then one rounding to
// nearest: |bf16(v) - v| <= 2^-8 |v| (normal range) or 2^-134 (subnormal),
// |v - want| <= e, so |bf16(v) - want| <= e + 2^-8 (|want| + e) + 2^-134.
inline double bf16_bound(double want, double e) {
  return e + kUBf16 * (std::abs(want) + e) + kBf16Tiny;
}

}  // namespace ddpm::testing
