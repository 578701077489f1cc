// conv2d: 2-D convolution of an NHWC map (cross-correlation, as in PyTorch).
// Inputs: x [N,H,W,C], weight [O,kh,kw,C] (OHWI: the layout implicit-GEMM
// kernels read; diffusers' OIHW is converted at the checkpoint boundary),
// bias [O] when `bias`, then r [N,Ho,Wo,O] when `residual`.
// Output: y [N,Ho,Wo,O] = conv(x, w) + bias + r.
// The residual input is the ResBlock's skip connection added in the
// convolution's epilogue (one op instead of conv + add); its gradient is dy.
#pragma once

#include "engine/ops/signature.h"

namespace ddpm {

// Zero padding per side; diffusers' downsample_padding=0 pads (top 0, bottom 1,
// left 0, right 1).
struct Padding2d {
  int top = 0, bottom = 0, left = 0, right = 0;
  static Padding2d same(int p) { return {p, p, p, p}; }
};

struct Conv2dParams {
  static constexpr const char* kName = "conv2d";
  int64_t out_channels = 0;
  int kernel_h = 3, kernel_w = 3;
  int stride = 1;
  Padding2d pad;
  bool bias = true;
  bool residual = false;  // a last input added to the output
};

OpSignature signature(const Conv2dParams& p, std::span<const Shape> in);
Shape conv2d_weight_shape(const Conv2dParams& p, int64_t in_channels);

}  // namespace ddpm
