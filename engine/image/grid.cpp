#include "engine/image/grid.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace ddpm {

Image8 make_grid(const float* images, int64_t count, int64_t h, int64_t w, int64_t c,
                 int64_t columns, int64_t padding, uint8_t pad_value) {
  if (count < 1 || h < 1 || w < 1 || c < 1 || columns < 1 || padding < 0)
    throw std::invalid_argument("make_grid: count " + std::to_string(count) + ", image " +
                                std::to_string(h) + "x" + std::to_string(w) + "x" +
                                std::to_string(c) + ", columns " + std::to_string(columns) +
                                ", padding " + std::to_string(padding) +
                                ": sizes and columns must be positive, padding not negative");
  const int64_t cols = std::min(columns, count), rows = (count + cols - 1) / cols;
  Image8 grid;
  grid.height = rows * h + (rows + 1) * padding;
  grid.width = cols * w + (cols + 1) * padding;
  grid.channels = c;
  grid.pixels.assign(static_cast<size_t>(grid.height * grid.width * c), pad_value);
  for (int64_t n = 0; n < count; ++n) {
    const int64_t top = padding + (n / cols) * (h + padding);
    const int64_t left = padding + (n % cols) * (w + padding);
    const float* src = images + n * h * w * c;
    for (int64_t y = 0; y < h; ++y) {
      uint8_t* dst = grid.pixels.data() + ((top + y) * grid.width + left) * c;
      for (int64_t i = 0; i < w * c; ++i) dst[i] = to_uint8(src[y * w * c + i]);
    }
  }
  return grid;
}

}  // namespace ddpm
