#include "engine/ops/linear.h"

namespace ddpm {

OpSignature signature(const LinearParams& p, std::span<const Shape> in) {
  const char* op = LinearParams::kName;
  expect_inputs(op, in, p.bias ? 3 : 2);
  const Shape& x = in[0];
  if (x.rank() < 1) throw ShapeError("linear: input must have at least one dimension");
  if (p.out_features <= 0) throw ShapeError("linear: out_features must be positive");
  expect_shape(op, "weight", in[1], Shape{p.out_features, x.back()});
  if (p.bias) expect_shape(op, "bias", in[2], Shape{p.out_features});
  Shape y = x;
  y[y.rank() - 1] = p.out_features;
  OpSignature s;
  s.outputs = {y};
  s.saved_inputs = bit(0) | bit(1);
  return s;
}

}  // namespace ddpm
