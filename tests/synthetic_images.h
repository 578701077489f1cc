// A tiny synthetic dataset for trainer tests: learnable, reproducible, and
// small enough for the emulator.
#pragma once

#include <cstdint>

#include "engine/data/image_dataset.h"
#include "engine/random.h"

namespace ddpm::testing {

// 8x8 grey images: a bright square at a random place.
inline ImageDataset squares(int64_t count) {
  ImageDataset d;
  d.count = count;
  d.height = d.width = 8;
  d.channels = 1;
  d.source = "synthetic squares";
  d.pixels.assign(size_t(count * 64), 0);
  Philox rng(5);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t y0 = int64_t(rng.below(5)), x0 = int64_t(rng.below(5));
    for (int64_t y = y0; y < y0 + 3; ++y)
      for (int64_t x = x0; x < x0 + 3; ++x) d.pixels[size_t(i * 64 + y * 8 + x)] = 255;
  }
  return d;
}

}  // namespace ddpm::testing
