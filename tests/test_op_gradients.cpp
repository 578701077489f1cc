// Finite-difference checks of every backward rule of the CPU backend, in
// double precision, on odd sizes (5x7 maps, channel counts not multiples of 8).
#include <gtest/gtest.h>

#include "op_harness.h"

namespace ddpm {
namespace {

using testing::check_gradients;
using testing::GradCheckOptions;

Conv2dParams conv(int64_t out, int k, int stride, Padding2d pad, bool bias = true) {
  Conv2dParams p;
  p.out_channels = out;
  p.kernel_h = p.kernel_w = k;
  p.stride = stride;
  p.pad = pad;
  p.bias = bias;
  return p;
}

TEST(Conv2dGrad, Kernel3Stride1Pad1) {
  check_gradients(conv(5, 3, 1, Padding2d::same(1)), {{2, 5, 7, 3}, {5, 3, 3, 3}, {5}});
}

TEST(Conv2dGrad, Kernel3Stride2AsymmetricPad) {
  check_gradients(conv(4, 3, 2, {0, 1, 0, 1}), {{2, 5, 7, 3}, {4, 3, 3, 3}, {4}});
}

TEST(Conv2dGrad, Kernel3Stride2SymmetricPadNoBias) {
  check_gradients(conv(4, 3, 2, Padding2d::same(1), false), {{1, 6, 7, 5}, {4, 3, 3, 5}});
}

TEST(Conv2dGrad, Kernel1Pointwise) {
  check_gradients(conv(7, 1, 1, {}), {{3, 5, 7, 5}, {7, 1, 1, 5}, {7}});
}

TEST(Conv2dGrad, Kernel1Stride2) {
  check_gradients(conv(3, 1, 2, {}), {{1, 5, 7, 5}, {3, 1, 1, 5}, {3}});
}

// The fused residual: its gradient is dy, beside the convolution's.
TEST(Conv2dGrad, WithResidual) {
  Conv2dParams p = conv(5, 3, 1, Padding2d::same(1));
  p.residual = true;
  check_gradients(p, {{2, 5, 7, 3}, {5, 3, 3, 3}, {5}, {2, 5, 7, 5}});
}

TEST(Conv2dGrad, StridedWithResidualNoBias) {
  Conv2dParams p = conv(4, 3, 2, {0, 1, 0, 1}, false);
  p.residual = true;
  check_gradients(p, {{2, 5, 7, 3}, {4, 3, 3, 3}, {2, 2, 3, 4}});
}

TEST(GroupNormGrad, AffineWithSilu) {
  check_gradients(GroupNormParams{3, 1e-6, true, true}, {{2, 5, 7, 6}, {6}, {6}});
}

TEST(GroupNormGrad, AffineWithoutSilu) {
  check_gradients(GroupNormParams{2, 1e-5, true, false}, {{3, 5, 7, 10}, {10}, {10}});
}

TEST(GroupNormGrad, NoAffineWithSilu) {
  check_gradients(GroupNormParams{5, 1e-6, false, true}, {{2, 5, 7, 5}});
}

TEST(GroupNormGrad, TokensLayout) {
  check_gradients(GroupNormParams{1, 1e-6, true, false}, {{2, 9, 3}, {3}, {3}});
}

// The per-channel add before the normalisation (the ResBlock's time embedding).
TEST(GroupNormGrad, ChannelAddAffineWithSilu) {
  check_gradients(GroupNormParams{3, 1e-6, true, true, true}, {{2, 5, 7, 6}, {6}, {6}, {2, 6}});
}

// Two channels a group: with one, dL/dbias (a sum over the group's pixels of
// a normalisation's input gradient) is zero whatever the rule computes.
TEST(GroupNormGrad, ChannelAddNoAffine) {
  check_gradients(GroupNormParams{5, 1e-6, false, true, true}, {{3, 5, 7, 10}, {3, 10}});
}

TEST(GroupNormGrad, ChannelAddTokensWithoutSilu) {
  check_gradients(GroupNormParams{1, 1e-6, true, false, true}, {{2, 9, 3}, {3}, {3}, {2, 3}});
}

TEST(LinearGrad, Matrix) {
  check_gradients(LinearParams{7}, {{3, 5}, {7, 5}, {7}});
}

TEST(LinearGrad, OverMapNoBias) {
  check_gradients(LinearParams{5, false}, {{2, 5, 7, 6}, {5, 6}});
}

// Three stacked weight parts (the fused QKV projection), with bias.
TEST(LinearGrad, ThreePartsOverMap) {
  check_gradients(LinearParams{9, true, false, 3},
                  {{2, 5, 7, 4}, {3, 4}, {3, 4}, {3, 4}, {3}, {3}, {3}});
}

// The fused residual, alone and with parts without bias.
TEST(LinearGrad, WithResidual) {
  check_gradients(LinearParams{5, true, true}, {{3, 4, 6}, {5, 6}, {5}, {3, 4, 5}});
}

TEST(LinearGrad, TwoPartsNoBiasWithResidual) {
  check_gradients(LinearParams{6, false, true, 2}, {{2, 5, 7, 4}, {3, 4}, {3, 4}, {2, 5, 7, 6}});
}

TEST(AttentionGrad, OneHeadOverMap) {
  const Shape s{2, 5, 7, 6};
  check_gradients(AttentionParams{1, 6}, {s, s, s});
}

TEST(AttentionGrad, TwoHeadsCustomScale) {
  const Shape s{1, 3, 5, 6};
  check_gradients(AttentionParams{2, 3, 0.7}, {s, s, s});
}

TEST(AttentionGrad, FourHeadsTokens) {
  const Shape s{3, 9, 8};
  check_gradients(AttentionParams{4, 2}, {s, s, s});
}

// q, k and v packed side by side in one [.., 3C] input.
TEST(AttentionGrad, PackedQkvTwoHeads) {
  check_gradients(AttentionParams{2, 3, 0, true}, {{2, 5, 7, 18}});
}

TEST(AttentionGrad, PackedQkvOneHeadTokens) {
  check_gradients(AttentionParams{1, 4, 0.6, true}, {{3, 9, 12}});
}

TEST(SiluGrad, Map) {
  check_gradients(SiluParams{}, {{2, 5, 7, 3}});
}

TEST(AddGrad, SameShape) {
  check_gradients(AddParams{}, {{2, 5, 7, 3}, {2, 5, 7, 3}});
}

TEST(AddGrad, PerChannelBroadcastScaled) {
  check_gradients(AddParams{0.5}, {{3, 5, 7, 5}, {3, 5}});
}

TEST(ConcatGrad, TwoInputs) {
  check_gradients(ConcatParams{}, {{2, 5, 7, 3}, {2, 5, 7, 5}});
}

TEST(ConcatGrad, ThreeInputs) {
  check_gradients(ConcatParams{}, {{1, 5, 7, 2}, {1, 5, 7, 1}, {1, 5, 7, 3}});
}

TEST(Upsample2xGrad, Map) {
  check_gradients(Upsample2xParams{}, {{2, 5, 7, 3}});
}

TEST(TimestepEmbeddingGrad, DiffusersDefaults) {
  GradCheckOptions o;
  o.gen = [](Philox& r, int) { return r.uniform() * 50; };
  check_gradients(TimestepEmbeddingParams{8, false, 1.0}, {{3}}, o);
}

TEST(TimestepEmbeddingGrad, FlippedOddDimNoShift) {
  GradCheckOptions o;
  o.gen = [](Philox& r, int) { return r.uniform() * 50; };
  check_gradients(TimestepEmbeddingParams{7, true, 0.0}, {{3}}, o);
}

TEST(DropoutGrad, TrainingMask) {
  // Dropout is linear in x for a fixed (seed, step) mask, which OpRun's
  // context fixes.
  GradCheckOptions o;
  o.max_elements_per_input = 210;
  check_gradients(DropoutParams{0.3, 2}, {{2, 5, 7, 3}}, o);
}

TEST(MseLossGrad, BothInputs) {
  check_gradients(MseLossParams{}, {{2, 5, 7, 3}, {2, 5, 7, 3}});
}

}  // namespace
}  // namespace ddpm
