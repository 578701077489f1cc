// The memory-bound ops: SiLU, add (with a per-(sample, channel) broadcast),
// channel concat, nearest upsample x2.
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

// y = x * sigmoid(x).
struct SiluParams {
  static constexpr const char* kName = "silu";
};

// y = scale * (a + b). b has a's shape, or is [N, C] for a = [N, ..., C]
// (the ResBlock's time-embedding projection added to every pixel).
struct AddParams {
  static constexpr const char* kName = "add";
  double scale = 1.0;
};

// y = cat(x0, x1, ...) along the last (channel) dimension.
struct ConcatParams {
  static constexpr const char* kName = "concat";
};

// y[n, 2i+a, 2j+b, c] = x[n, i, j, c]: nearest-neighbour upsampling by 2.
struct Upsample2xParams {
  static constexpr const char* kName = "upsample_nearest2x";
};

OpSignature signature(const SiluParams& p, std::span<const Shape> in);
OpSignature signature(const AddParams& p, std::span<const Shape> in);
OpSignature signature(const ConcatParams& p, std::span<const Shape> in);
OpSignature signature(const Upsample2xParams& p, std::span<const Shape> in);

// True when add's b is the [N, C] broadcast form rather than a's own shape.
bool add_is_broadcast(const Shape& a, const Shape& b);

}  // namespace ddpm
