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
  expect_inputs(op, in, p.packed_qkv ? 1 : 3);
  const Shape& q = in[0];
  if (q.rank() < 3)
    throw ShapeError(std::string("attention: ") + (p.packed_qkv ? "qkv" : "q") +
                     " must be [N, tokens..., C], got " + q.str());
  const int64_t channels = p.heads * p.head_dim;
  const int64_t per_token = p.packed_qkv ? 3 * channels : channels;
  if (p.heads <= 0 || p.head_dim <= 0 || q.back() != per_token)
    throw ShapeError("attention: channels " + std::to_string(q.back()) +
                     " != " + (p.packed_qkv ? "3 x " : "") + "heads " + std::to_string(p.heads) +
                     " x head_dim " + std::to_string(p.head_dim));
  if (!p.packed_qkv) {
    expect_shape(op, "k", in[1], q);
    expect_shape(op, "v", in[2], q);
  }
  Shape o = q;
  o[o.rank() - 1] = channels;
  OpSignature s;
  s.outputs = {o, Shape{q[0], p.heads, attention_tokens(q)}};
  s.saved_inputs = p.packed_qkv ? bit(0) : bit(0) | bit(1) | bit(2);
  s.saved_outputs = bit(0) | bit(1);
  s.nondiff_outputs = bit(1);
  return s;
}

}  // namespace ddpm
