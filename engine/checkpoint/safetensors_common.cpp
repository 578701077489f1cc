// Pieces shared by the safetensors reader, writer and conversions: byte
// counts, names of dtypes and shapes, and text made safe for messages.
#include <string_view>

#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/safetensors_internal.h"

namespace ddpm {

namespace safetensors_detail {

bool element_count(std::span<const int64_t> shape, uint64_t* count) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *count = n;
  return true;
}

bool byte_count(std::span<const int64_t> shape, DType dtype, uint64_t* bytes) {
  uint64_t n = 0;
  return element_count(shape, &n) && !__builtin_mul_overflow(n, uint64_t{dtype_size(dtype)}, bytes);
}

namespace {

// The length of the UTF-8 sequence starting at s[i], or 0 if it is not one.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t lead = byte(i);
  size_t n = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::string printable(std::string_view s, size_t max_bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (out.size() >= max_bytes) return out.append("...");
    const auto c = static_cast<uint8_t>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
    } else if (const size_t n = c >= 0x80 ? utf8_sequence_length(s, i) : 0; n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      if (c == '\n') {
        out += "\\n";
      } else if (c == '\t') {
        out += "\\t";
      } else {
        out.append("\\x").append(1, kHex[c >> 4]).append(1, kHex[c & 15]);
      }
      ++i;
    }
  }
  return out;
}

std::string quoted(const std::string& s) {
  constexpr size_t kMax = 200;
  // Built with append: GCC 12 warns (-Wrestrict, a false positive) on "literal" + rvalue string.
  std::string q = "'";
  q.append(printable(s, kMax)).append("'");
  if (s.size() > kMax) q.append(" (").append(std::to_string(s.size())).append(" bytes)");
  return q;
}

}  // namespace safetensors_detail

int64_t StTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

const char* safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
  }
  return "?";
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace ddpm
