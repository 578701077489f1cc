// The safetensors file format (the weights file of a diffusers model folder):
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]},
//             optional "__metadata__": {string: string}}, padded with spaces
//   the rest  raw little-endian tensor data; offsets are relative to its start
//
// The reader trusts nothing in the file: every malformed header, range or
// count is a CheckpointError naming the file, the tensor and what was expected,
// and nothing is allocated before the sizes it depends on are checked against
// the file's size. The writer produces the bytes the Python `safetensors`
// library produces for the same tensors (tensors ordered by dtype size then
// name, header padded with spaces to a multiple of 8 so every tensor is aligned
// to its element size) and replaces the target atomically.
//
// This layer knows files, names, dtypes and shapes only; mapping names and
// layouts to the engine's parameters is the model loader's job.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "engine/checkpoint/errors.h"
#include "engine/tensor.h"

namespace ddpm {

// One tensor of a file: dtype, shape (empty for a scalar) and its raw
// little-endian bytes, exactly numel * dtype_size(dtype) of them.
struct StTensor {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;

  int64_t numel() const;
};

struct StFile {
  std::map<std::string, StTensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"; diffusers writes {"format": "pt"}
};

// The Python library's limit; a longer header means a corrupt or hostile file.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Reads a whole file. Throws CheckpointError ("cannot open <path>: <OS error>",
// or "<path>: <what is wrong>").
StFile read_safetensors(const std::filesystem::path& path);
// The same reader on bytes already in memory; source_name stands for the file
// in messages.
StFile parse_safetensors(std::span<const uint8_t> bytes, const std::string& source_name);

// Writes through write_file_atomically: the old file survives any failure.
// Throws CheckpointError before touching the disk if a tensor's byte count does
// not match its dtype and shape, or a name cannot be written.
void write_safetensors(const std::filesystem::path& path, const StFile& file);
// The exact bytes write_safetensors writes; dest_name is used in messages.
std::vector<uint8_t> serialize_safetensors(const StFile& file, const std::string& dest_name);

// "F32", "F16", "BF16", "F64": the names safetensors uses.
const char* safetensors_dtype_name(DType t);
// "[128, 3, 3, 3]", "[]" for a scalar: how shapes appear in messages.
std::string shape_string(std::span<const int64_t> shape);

// Element conversions. to_f32/to_f64 accept every supported dtype; widening is
// exact (f16 and bf16 including subnormals, inf and NaN), F64 -> f32 rounds to
// nearest. from_f32/from_f64 produce F32, F16, BF16 or F64, rounding to nearest
// even and overflowing to inf as PyTorch's .to(dtype) does; from_f64 to F16 or
// BF16 goes through f32, as PyTorch's double -> half conversion does. They
// throw CheckpointError if the value count does not match the shape.
std::vector<float> to_f32(const StTensor& t);
std::vector<double> to_f64(const StTensor& t);
StTensor from_f32(std::span<const float> values, std::vector<int64_t> shape, DType target);
StTensor from_f64(std::span<const double> values, std::vector<int64_t> shape, DType target);

}  // namespace ddpm
