#include "engine/ops/timestep_embedding.h"

namespace ddpm {

OpSignature signature(const TimestepEmbeddingParams& p, std::span<const Shape> in) {
  expect_inputs(TimestepEmbeddingParams::kName, in, 1);
  expect_rank(TimestepEmbeddingParams::kName, "timesteps", in[0], 1);
  if (p.dim < 2) throw ShapeError("timestep_embedding: dim must be at least 2");
  if (p.dim / 2 - p.freq_shift == 0)
    throw ShapeError("timestep_embedding: dim/2 - freq_shift is zero");
  OpSignature s;
  s.outputs = {Shape{in[0][0], p.dim}};
  s.saved_inputs = bit(0);
  return s;
}

}  // namespace ddpm
