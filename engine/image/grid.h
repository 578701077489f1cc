// From model outputs in [-1, 1] to 8-bit pixels: one value, and a batch of
// images tiled into one grid image for a PNG.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace ddpm {

// As diffusers' DDPMPipeline and numpy_to_pil do in float32:
// (x / 2 + 0.5).clamp(0, 1), then (* 255).round() (half to even), as uint8.
// NaN gives 0.
inline uint8_t to_uint8(float x) {
  float v = x / 2.0f + 0.5f;
  if (!(v > 0.0f)) v = 0.0f;  // also NaN
  if (v > 1.0f) v = 1.0f;
  return static_cast<uint8_t>(std::nearbyint(v * 255.0f));
}

struct Image8 {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;  // height x width x channels
};

// Tiles `count` NHWC images (h x w x c floats in [-1, 1]) row-major into
// min(columns, count) columns and ceil(count / columns) rows, with `padding`
// pixels of `pad_value` around and between tiles (torchvision's make_grid
// layout): height rows*h + (rows+1)*padding, width cols*w + (cols+1)*padding.
// Cells past `count` in the last row stay pad_value. Throws
// std::invalid_argument for non-positive sizes or a negative padding.
Image8 make_grid(const float* images, int64_t count, int64_t h, int64_t w, int64_t c,
                 int64_t columns, int64_t padding = 2, uint8_t pad_value = 0);

}  // namespace ddpm
