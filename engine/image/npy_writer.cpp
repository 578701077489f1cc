#include "engine/image/npy_writer.h"

#include <bit>
#include <cstring>
#include <vector>

#include "engine/checkpoint/atomic_file.h"
#include "engine/image/image_error.h"

namespace ddpm {

namespace {

// The shared atomic writer reports I/O errors as CheckpointError; image output
// reports ImageError, the same message.
void write_bytes_atomically(const std::filesystem::path& path, std::span<const uint8_t> bytes) {
  try {
    write_file_atomically(path, bytes);
  } catch (const CheckpointError& e) {
    throw ImageError(e.what());
  }
}

}  // namespace

std::string npy_header_f32(std::span<const int64_t> shape) {
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0)
      throw ImageError(".npy: dimension " + std::to_string(i) + " is " + std::to_string(shape[i]) +
                       "; expected at least 0");
    dims += (i ? ", " : "") + std::to_string(shape[i]);
  }
  if (shape.size() == 1) dims += ",";  // a Python 1-tuple
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // magic (6) + version (2) + length (2) + dict + spaces + '\n' = a multiple of 64.
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  if (dict.size() > 0xffff) throw ImageError(".npy: header too long for format version 1.0");
  std::string header = "\x93NUMPY";
  header += '\x01';
  header += '\x00';
  header += static_cast<char>(dict.size() & 0xff);
  header += static_cast<char>(dict.size() >> 8);
  return header + dict;
}

void write_npy(const std::filesystem::path& path, const float* data,
               std::span<const int64_t> shape) {
  std::string header;
  try {
    header = npy_header_f32(shape);
  } catch (const ImageError& e) {
    throw ImageError(path.string() + ": " + e.what());
  }
  size_t count = 1;
  for (const int64_t d : shape) count *= static_cast<size_t>(d);
  std::vector<uint8_t> bytes(header.size() + count * sizeof(float));
  std::memcpy(bytes.data(), header.data(), header.size());
  uint8_t* out = bytes.data() + header.size();
  if constexpr (std::endian::native == std::endian::little) {
    if (count) std::memcpy(out, data, count * sizeof(float));
  } else {
    for (size_t i = 0; i < count; ++i) {
      const auto bits = std::bit_cast<uint32_t>(data[i]);
      for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<uint8_t>(bits >> (8 * b));
    }
  }
  write_bytes_atomically(path, bytes);
}

}  // namespace ddpm
