// Writing 8-bit grey or RGB images as PNG (libpng), atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "engine/image/grid.h"

namespace ddpm {

// hwc: height x width x channels bytes, channels 1 (grey) or 3 (RGB).
std::vector<uint8_t> encode_png(const uint8_t* hwc, int64_t height, int64_t width,
                                int64_t channels);

// Encodes, then writes through write_file_atomically
// (engine/checkpoint/atomic_file.h). Throws ImageError naming the file for a
// bad size or channel count, an encoder error, or an I/O error.
void write_png(const std::filesystem::path& path, const uint8_t* hwc, int64_t height, int64_t width,
               int64_t channels);
void write_png(const std::filesystem::path& path, const Image8& image);

}  // namespace ddpm
