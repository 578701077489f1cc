#include "engine/ops/elementwise.h"

namespace ddpm {

OpSignature signature(const SiluParams&, std::span<const Shape> in) {
  expect_inputs(SiluParams::kName, in, 1);
  OpSignature s;
  s.outputs = {in[0]};
  s.saved_inputs = bit(0);
  return s;
}

bool add_is_broadcast(const Shape& a, const Shape& b) {
  return a != b && a.rank() >= 3 && b == Shape{a[0], a.back()};
}

OpSignature signature(const AddParams&, std::span<const Shape> in) {
  expect_inputs(AddParams::kName, in, 2);
  if (in[0] != in[1] && !add_is_broadcast(in[0], in[1]))
    throw ShapeError("add: b has shape " + in[1].str() + ", expected " + in[0].str() +
                     " or [N, C] for a per-channel broadcast");
  OpSignature s;
  s.outputs = {in[0]};
  return s;
}

OpSignature signature(const ConcatParams&, std::span<const Shape> in) {
  if (in.size() < 2) throw ShapeError("concat: needs at least two inputs");
  Shape y = in[0];
  int64_t channels = 0;
  for (const Shape& x : in) {
    bool same = x.rank() == y.rank();
    for (int i = 0; same && i + 1 < x.rank(); ++i) same = x[i] == y[i];
    if (!same)
      throw ShapeError("concat: input " + x.str() + " differs from " + in[0].str() +
                       " outside the channel dimension");
    channels += x.back();
  }
  y[y.rank() - 1] = channels;
  OpSignature s;
  s.outputs = {y};
  return s;
}

OpSignature signature(const Upsample2xParams&, std::span<const Shape> in) {
  expect_inputs(Upsample2xParams::kName, in, 1);
  expect_rank(Upsample2xParams::kName, "input", in[0], 4);
  const Shape& x = in[0];
  OpSignature s;
  s.outputs = {Shape{x[0], 2 * x[1], 2 * x[2], x[3]}};
  return s;
}

}  // namespace ddpm
