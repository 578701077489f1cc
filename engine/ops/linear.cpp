#include "engine/ops/linear.h"

namespace ddpm {

OpSignature signature(const LinearParams& p, std::span<const Shape> in) {
  const char* op = LinearParams::kName;
  if (p.out_features <= 0) throw ShapeError("linear: out_features must be positive");
  if (p.weight_parts < 1 || p.out_features % p.weight_parts != 0)
    throw ShapeError("linear: " + std::to_string(p.out_features) +
                     " out_features are not divisible into " + std::to_string(p.weight_parts) +
                     " weight parts");
  expect_inputs(op, in, linear_input_count(p));
  const Shape& x = in[0];
  if (x.rank() < 1) throw ShapeError("linear: input must have at least one dimension");
  const int64_t rows_per_part = p.out_features / p.weight_parts;
  OpSignature s;
  s.saved_inputs = bit(0);
  for (int64_t i = 0; i < p.weight_parts; ++i) {
    expect_shape(op, "weight", in[linear_weight_slot(p, i)], Shape{rows_per_part, x.back()});
    if (p.bias) expect_shape(op, "bias", in[linear_bias_slot(p, i)], Shape{rows_per_part});
    s.saved_inputs |= bit(int(linear_weight_slot(p, i)));
  }
  Shape y = x;
  y[y.rank() - 1] = p.out_features;
  if (p.residual) expect_shape(op, "residual", in.back(), y);
  s.outputs = {y};
  return s;
}

}  // namespace ddpm
