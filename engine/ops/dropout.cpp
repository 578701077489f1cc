#include "engine/ops/dropout.h"

namespace ddpm {

OpSignature signature(const DropoutParams& p, std::span<const Shape> in) {
  expect_inputs(DropoutParams::kName, in, 1);
  if (!(p.p >= 0 && p.p < 1)) throw ShapeError("dropout: p must be in [0, 1)");
  OpSignature s;
  s.outputs = {in[0]};
  return s;
}

}  // namespace ddpm
