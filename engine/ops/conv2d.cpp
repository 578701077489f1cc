#include "engine/ops/conv2d.h"

namespace ddpm {

Shape conv2d_weight_shape(const Conv2dParams& p, int64_t in_channels) {
  return Shape{p.out_channels, p.kernel_h, p.kernel_w, in_channels};
}

OpSignature signature(const Conv2dParams& p, std::span<const Shape> in) {
  const char* op = Conv2dParams::kName;
  expect_inputs(op, in, 2 + (p.bias ? 1 : 0) + (p.residual ? 1 : 0));
  if (p.out_channels <= 0 || p.kernel_h <= 0 || p.kernel_w <= 0 || p.stride <= 0)
    throw ShapeError("conv2d: out_channels, kernel size and stride must be positive");
  if (p.pad.top < 0 || p.pad.bottom < 0 || p.pad.left < 0 || p.pad.right < 0)
    throw ShapeError("conv2d: padding must be non-negative");
  const Shape& x = in[0];
  expect_rank(op, "input x", x, 4);
  expect_shape(op, "weight", in[1], conv2d_weight_shape(p, x[3]));
  if (p.bias) expect_shape(op, "bias", in[2], Shape{p.out_channels});
  const int64_t hp = x[1] + p.pad.top + p.pad.bottom, wp = x[2] + p.pad.left + p.pad.right;
  if (hp < p.kernel_h || wp < p.kernel_w)
    throw ShapeError("conv2d: padded input " + std::to_string(hp) + "x" + std::to_string(wp) +
                     " is smaller than the kernel");
  const int64_t ho = (hp - p.kernel_h) / p.stride + 1, wo = (wp - p.kernel_w) / p.stride + 1;
  OpSignature s;
  s.outputs = {Shape{x[0], ho, wo, p.out_channels}};
  if (p.residual) expect_shape(op, "residual", in.back(), s.outputs[0]);
  s.saved_inputs = bit(0) | bit(1);
  return s;
}

}  // namespace ddpm
