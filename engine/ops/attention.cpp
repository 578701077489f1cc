#include "engine/ops/attention.h"

#include <cmath>

namespace ddpm {

double attention_scale(const AttentionParams& p) {
  return p.scale != 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(p.head_dim));
}

int64_t attention_tokens(const Shape& q) {
  int64_t t = 1;
  for (int i = 1; i + 1 < q.rank(); ++i) t *= q[i];
  return t;
}

OpSignature signature(const AttentionParams& p, std::span<const Shape> in) {
  const char* op = AttentionParams::kName;
  expect_inputs(op, in, 3);
  const Shape& q = in[0];
  if (q.rank() < 3) throw ShapeError("attention: q must be [N, tokens..., C], got " + q.str());
  if (p.heads <= 0 || p.head_dim <= 0 || q.back() != p.heads * p.head_dim)
    throw ShapeError("attention: channels " + std::to_string(q.back()) + " != heads " +
                     std::to_string(p.heads) + " x head_dim " + std::to_string(p.head_dim));
  expect_shape(op, "k", in[1], q);
  expect_shape(op, "v", in[2], q);
  OpSignature s;
  s.outputs = {q, Shape{q[0], p.heads, attention_tokens(q)}};
  s.saved_inputs = bit(0) | bit(1) | bit(2);
  s.saved_outputs = bit(0) | bit(1);
  s.nondiff_outputs = bit(1);
  return s;
}

}  // namespace ddpm
