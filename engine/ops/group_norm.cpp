#include "engine/ops/group_norm.h"

namespace ddpm {

OpSignature signature(const GroupNormParams& p, std::span<const Shape> in) {
  const char* op = GroupNormParams::kName;
  expect_inputs(op, in, 1 + (p.affine ? 2 : 0) + (p.channel_add ? 1 : 0));
  const Shape& x = in[0];
  if (x.rank() < 2) throw ShapeError("group_norm: input must be [N, ..., C], got " + x.str());
  const int64_t c = x.back();
  if (p.groups <= 0 || c % p.groups != 0)
    throw ShapeError("group_norm: " + std::to_string(c) + " channels are not divisible into " +
                     std::to_string(p.groups) + " groups");
  if (!(p.eps > 0)) throw ShapeError("group_norm: eps must be positive");
  if (p.affine) {
    expect_shape(op, "gamma", in[1], Shape{c});
    expect_shape(op, "beta", in[2], Shape{c});
  }
  const int add = int(group_norm_channel_add_slot(p));
  if (p.channel_add) expect_shape(op, "channel_add", in[size_t(add)], Shape{x[0], c});
  OpSignature s;
  s.outputs = {x, Shape{x[0], p.groups}, Shape{x[0], p.groups}};
  // The SiLU backward recomputes the normalised value, which needs beta too;
  // the normalised value itself needs h = x + bias.
  s.saved_inputs =
      bit(0) | (p.affine ? bit(1) | (p.silu ? bit(2) : 0u) : 0u) | (p.channel_add ? bit(add) : 0u);
  s.saved_outputs = bit(1) | bit(2);
  s.nondiff_outputs = bit(1) | bit(2);
  return s;
}

}  // namespace ddpm
