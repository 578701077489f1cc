// The limits of a Conv2dShape (conv2d.cuh's validate()), shared by the fp32
// convolution entry points (conv2d.cu) and the bf16 family (conv2d_bf16.cu),
// messages prefixed with the family's name ("conv2d: ...", "conv2d_bf16:
// ..."). Host-only and header-inline, so that the bf16 family and its
// emulated tests need none of the fp32 implementations conv2d.cu dispatches to.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/conv2d.cuh"

namespace ddpm::kernels::detail {

[[noreturn]] inline void conv2d_bad_shape(const char* family, const std::string& what) {
  throw std::invalid_argument(std::string(family) + ": " + what);
}

inline void check_conv2d_range(const char* family, const char* name, int64_t v, int64_t lo,
                               int64_t hi) {
  if (v < lo || v > hi)
    conv2d_bad_shape(family, std::string(name) + " is " + std::to_string(v) + ", expected " +
                                 std::to_string(lo) + ".." + std::to_string(hi));
}

// std::invalid_argument naming the field unless s is within conv2d.cuh's limits.
inline void check_conv2d_shape(const char* family, const Conv2dShape& s) {
  constexpr int64_t kMaxExtent = int64_t(1) << 30;
  auto check_range = [family](const char* name, int64_t v, int64_t lo, int64_t hi) {
    check_conv2d_range(family, name, v, lo, hi);
  };
  check_range("batch", s.batch, 0, kMaxExtent);
  check_range("in_h", s.in_h, 1, kMaxExtent);
  check_range("in_w", s.in_w, 1, kMaxExtent);
  check_range("in_channels", s.in_channels, 1, kMaxExtent);
  check_range("out_channels", s.out_channels, 1, kMaxExtent);
  check_range("kernel_h", s.kernel_h, 1, 7);
  check_range("kernel_w", s.kernel_w, 1, 7);
  check_range("stride", s.stride, 1, 4);
  check_range("pad_top", s.pad_top, 0, s.kernel_h - 1);
  check_range("pad_bottom", s.pad_bottom, 0, s.kernel_h - 1);
  check_range("pad_left", s.pad_left, 0, s.kernel_w - 1);
  check_range("pad_right", s.pad_right, 0, s.kernel_w - 1);
  if (s.in_h + s.pad_top + s.pad_bottom < s.kernel_h ||
      s.in_w + s.pad_left + s.pad_right < s.kernel_w)
    conv2d_bad_shape(family, "the padded input " + std::to_string(s.in_h) + "x" +
                                 std::to_string(s.in_w) + " is smaller than the " +
                                 std::to_string(s.kernel_h) + "x" + std::to_string(s.kernel_w) +
                                 " kernel");
  constexpr int64_t kMaxElements = (int64_t(1) << 31) - 1;
  const int64_t x = s.in_pixels() * s.in_channels;
  const int64_t y = s.out_pixels() * s.out_channels;
  const int64_t w = s.out_channels * s.gemm_k();
  if (x > kMaxElements || y > kMaxElements || w > kMaxElements)
    conv2d_bad_shape(family, "a tensor has 2^31 elements or more (x " + std::to_string(x) + ", y " +
                                 std::to_string(y) + ", w " + std::to_string(w) + ")");
}

}  // namespace ddpm::kernels::detail
