// Decoding one PNG file (libpng) to 8-bit grey or RGB pixels, HWC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace ddpm {

struct DecodedImage {
  int64_t height = 0, width = 0, channels = 0;  // channels: 1 (grey) or 3 (RGB)
  std::vector<uint8_t> pixels;                  // height x width x channels
};

// Grey and grey+alpha become 1 channel; RGB, RGBA and palette images 3. Alpha
// (and tRNS transparency) is dropped, 16-bit samples are scaled to 8 bits,
// 1/2/4-bit grey is expanded, interlacing is undone. Images wider or taller
// than 16384 are refused. Throws DataError("<name>: ...") for anything that is
// not a valid PNG, libpng's message included.
DecodedImage decode_png(const uint8_t* data, size_t size, const std::string& name);
DecodedImage read_png(const std::filesystem::path& path);

}  // namespace ddpm
