// Helpers shared by the safetensors reader, writer and conversions; not part
// of the engine's interface.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tensor.h"

namespace ddpm::safetensors_detail {

// The product of the dimensions in *count; false if a dimension is negative or
// the product does not fit in 64 bits.
bool element_count(std::span<const int64_t> shape, uint64_t* count);

// numel(shape) * dtype_size(dtype) in *bytes; false if a dimension is negative
// or the product does not fit in 64 bits.
bool byte_count(std::span<const int64_t> shape, DType dtype, uint64_t* bytes);

// Text from a file made safe for a message: valid UTF-8 is kept, control
// characters and bytes that are not UTF-8 become \n, \t or \xNN, and the result
// is cut after about max_bytes (at a character boundary), so that a hostile
// header cannot produce a megabyte-long or terminal-garbling message.
std::string printable(std::string_view s, size_t max_bytes);

// A name as it appears in a message: printable(name, 200) in single quotes,
// followed by the name's length when it was cut.
std::string quoted(const std::string& s);

// What a header says about one tensor, checked against the data region.
struct HeaderEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

// The checked header: entries sorted by position, tiling the data region.
struct Header {
  std::vector<HeaderEntry> entries;
  std::map<std::string, std::string> metadata;
};

// Parses and checks the header text of a file whose data region holds
// data_size bytes; throws CheckpointError naming `source`.
Header parse_header(std::span<const uint8_t> text, uint64_t data_size, const std::string& source);

}  // namespace ddpm::safetensors_detail
