// Writing float32 arrays as NumPy .npy files (format version 1.0), which
// numpy.load reads: the magic "\x93NUMPY", version 1 0, a little-endian
// uint16 header length, a Python dict literal padded with spaces and a newline
// so the data starts at a multiple of 64 bytes, then the data, C order,
// little-endian.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace ddpm {

// Everything before the data, e.g. for shape {2, 3}:
// "\x93NUMPY\x01\x00" + len + "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + pad.
std::string npy_header_f32(std::span<const int64_t> shape);

// Writes the array atomically (engine/checkpoint/atomic_file.h). Throws ImageError
// naming the file for a negative dimension or an I/O error.
void write_npy(const std::filesystem::path& path, const float* data,
               std::span<const int64_t> shape);

}  // namespace ddpm
