// dropout: in training y = x * keep / (1 - p), keep = (u >= p) with u uniform
// from Philox keyed on (run seed, step, salt, element); identity in inference.
// The mask is regenerated in backward rather than stored. `salt` tells the
// dropout nodes of one graph apart (the graph builder numbers them).
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

struct DropoutParams {
  static constexpr const char* kName = "dropout";
  double p = 0.0;
  uint32_t salt = 0;
};

OpSignature signature(const DropoutParams& p, std::span<const Shape> in);

}  // namespace ddpm
