// timestep_embedding: diffusers' get_timestep_embedding. For t [N] (float
// timesteps) gives [N, dim]: half = dim/2 frequencies
// f_i = exp(-ln(max_period) * i / (half - freq_shift)), then
// [sin(scale t f), cos(scale t f)], swapped to [cos, sin] when flip_sin_to_cos,
// zero-padded by one column when dim is odd.
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct TimestepEmbeddingParams {
  static constexpr const char* kName = "timestep_embedding";
  int64_t dim = 0;
  bool flip_sin_to_cos = false;
  double freq_shift = 1.0;
  double max_period = 10000.0;
  double scale = 1.0;
};

OpSignature signature(const TimestepEmbeddingParams& p, std::span<const Shape> in);

}  // namespace ddpm
