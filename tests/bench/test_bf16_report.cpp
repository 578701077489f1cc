// The kernel benchmark's bf16 rows without a GPU (apps/bench/bf16_report.h):
// the FLOP formulas, the agreement check that prints MISMATCH, and the table.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "apps/bench/bf16_report.h"
#include "apps/bench/model_shapes.h"
#include "engine/unet_config.h"

namespace ddpm::bench {
namespace {

TEST(BenchBf16Report, FlopFormulasCountTwoPerMultiplyAdd) {
  // 2 x 5x7 x 3 -> 4, 3x3 stride 2, pads (0,1,0,1): Ho = (5+1-3)/2+1 = 2,
  // Wo = (7+1-3)/2+1 = 3, so 2 N Ho Wo O R S C = 2*2*2*3*4*9*3.
  ConvLayer c;
  c.batch = 2, c.in_h = 5, c.in_w = 7, c.in_channels = 3, c.out_channels = 4;
  c.kernel_h = c.kernel_w = 3, c.stride = 2, c.pad_bottom = 1, c.pad_right = 1;
  EXPECT_EQ(conv_flops(c), 2.0 * 2 * 2 * 3 * 4 * 9 * 3);
  // Linear 5 rows, 6 -> 7: 2 rows in out.
  EXPECT_EQ(linear_flops(LinearLayer{5, 6, 7, true, 1, "l"}), 2.0 * 5 * 6 * 7);
  // Attention N 2, T 5, H 3, D 4: forward 2 matmuls of N H T^2 D multiply-adds
  // (4 N H T^2 D FLOP), the backward twice that.
  const AttentionLayer a{2, 5, 3, 4, 1, "a"};
  EXPECT_EQ(attention_flops(a, false), 4.0 * 2 * 3 * 25 * 4);
  EXPECT_EQ(attention_flops(a, true), 8.0 * 2 * 3 * 25 * 4);
  // The CIFAR-10 model's 32x32 128->128 conv at batch 128: --list's 38.65 GFLOP.
  const ModelShapes m = model_shapes(UNetConfig::cifar10(), 128);
  EXPECT_NEAR(conv_flops(m.convs.at(1)) * 1e-9, 38.65, 0.005);
}

TEST(BenchBf16Report, AgreementBoundIsTwoToTheMinusSix) {
  const std::vector<float> ref{1.0f, -64.0f, 0.5f};
  EXPECT_TRUE(agreement(ref, ref).ok());
  EXPECT_EQ(agreement(ref, ref).relative(), 0.0);
  // max |ref| = 64: a difference of exactly 64 * 2^-6 = 1 passes, 1.0625 fails.
  EXPECT_TRUE(agreement({2.0f, -64.0f, 0.5f}, ref).ok());
  const Agreement over = agreement({2.0625f, -64.0f, 0.5f}, ref);
  EXPECT_FALSE(over.ok());
  EXPECT_DOUBLE_EQ(over.relative(), 1.0625 / 64);
  // Non-finite values, nothing compared, and a difference against an all-zero
  // reference all fail; zero against zero passes.
  EXPECT_FALSE(agreement({std::nanf(""), -64.0f, 0.5f}, ref).ok());
  EXPECT_FALSE(agreement({std::numeric_limits<float>::infinity(), 0, 0}, ref).ok());
  EXPECT_FALSE(agreement({}, {}).ok());
  EXPECT_FALSE(agreement({1e-30f}, {0.0f}).ok());
  EXPECT_TRUE(agreement({0.0f}, {0.0f}).ok());
  EXPECT_THROW(agreement({1.0f}, ref), std::invalid_argument);
}

TEST(BenchBf16Report, BlocksCompareOnlyTheirColumns) {
  // Two rows of stride 3; the block is columns 1..2. A wrong value in column 0
  // is not this block's; one in column 2 is.
  const std::vector<float> ref{9, 1, 2, 9, 3, 4};
  std::vector<float> ours{-5, 1, 2, -5, 3, 4};
  Agreement a;
  accumulate_agreement(a, ours.data() + 1, ref.data() + 1, 2, 2, 3);
  EXPECT_TRUE(a.ok());
  EXPECT_EQ(a.compared, 4u);
  EXPECT_EQ(a.max_ref, 4.0);
  ours[5] = 5;
  Agreement b;
  accumulate_agreement(b, ours.data() + 1, ref.data() + 1, 2, 2, 3);
  EXPECT_FALSE(b.ok());
  // worse() keeps the failing one, whichever side it is on.
  EXPECT_FALSE(worse(a, b).ok());
  EXPECT_FALSE(worse(b, a).ok());
  EXPECT_THROW(accumulate_agreement(a, ours.data(), ref.data(), 1, 4, 3), std::invalid_argument);
}

Bf16Row conv_row(const std::string& op, int uses, double ours_ms, double vendor_ms) {
  Bf16Row r;
  r.kind = LayerKind::conv;
  r.layer = "3x3 s1 4x4 8->8 pad 1,1,1,1";
  r.op = op;
  r.uses = uses;
  r.flops = 2e9;
  r.ours.ms = ours_ms;
  r.vendor_name = "cudnn";
  r.vendor.ms = vendor_ms;
  r.fp32.ms = 4 * ours_ms;
  r.reference = "cudnn";
  r.check = agreement({1.0f}, {1.0f});
  return r;
}

TEST(BenchBf16Report, TableShowsTimesRatiosChecksAndMismatches) {
  std::vector<Bf16Row> rows{conv_row("fwd", 2, 0.5, 1.0), conv_row("bwd_data", 0, 1.0, 1.0),
                            conv_row("bwd_filter", 2, 1.0, 0.5)};
  rows[1].vendor = {-1, "cuDNN bwd failed: CUDNN_STATUS_NOT_SUPPORTED"};
  rows[1].check.reset();
  Bf16Row attention;
  attention.kind = LayerKind::attention;
  attention.layer = "T 16, 2 x 8";
  attention.op = "bwd";
  attention.uses = 1;
  attention.flops = 1e9;
  attention.ours.ms = 1.0;
  attention.fp32.ms = 3.0;
  attention.reference = "ours fp32";
  attention.check = agreement({1.5f}, {1.0f});  // 0.5 > 2^-6: a mismatch
  rows.push_back(attention);
  ASSERT_EQ(count_mismatches(rows), 1);
  EXPECT_EQ(count_failures(rows), 0);  // a failed vendor is not ours

  const std::string md = render_bf16_section(rows, 128, 3, 10, "simt");
  // fwd: ours 0.5 ms, cuDNN 1 ms: ratio 0.50; 2 GFLOP in 0.5 ms = 4 TFLOP/s.
  EXPECT_NE(md.find("| 3x3 s1 4x4 8->8 pad 1,1,1,1 | 2 | fwd | 0.5000 | cudnn | 1.0000 | 2.0000 | "
                    "0.50 | 4.0 | ok 0.0e+00 vs cudnn |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| bwd_data | 1.0000 | cudnn | failed: cuDNN bwd failed: "
                    "CUDNN_STATUS_NOT_SUPPORTED | 4.0000 |  | 2.0 | not compared |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| attention T 16, 2 x 8 | 1 | bwd | 1.0000 | - | n/a | 3.0000 |  | 1.0 | "
                    "**MISMATCH** 5.0e-01 vs ours fp32 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("**1 bf16 row(s) MISMATCH their reference.**"), std::string::npos);
  // Conv totals over uses: ours 2 x 0.5 + 0 x 1 + 2 x 1 = 3 ms a training
  // step, 1 ms a sampling step (the forwards); the failed bwd_data of uses 0
  // does not make cuDNN's total incomplete: 2 x 1 + 2 x 0.5 = 3 ms.
  EXPECT_NE(md.find("| ours bf16 | 3.00 | 42667 | 1.00 | 128.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| cuDNN bf16 | 3.00 | 42667 | 2.00 | 64.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| ours fp32 (simt) | 12.00 |"), std::string::npos) << md;
}

TEST(BenchBf16Report, CellsStayOnOneLineAndIncompleteTotalsSaySo) {
  Bf16Row r = conv_row("fwd", 1, 1.0, 1.0);
  r.ours = {-1, "CUDA error | with a pipe\nand a newline"};
  r.check.reset();
  EXPECT_EQ(count_failures({r}), 1);
  const std::string md = render_bf16_section({r}, 1, 0, 1, "simt");
  EXPECT_NE(md.find("failed: CUDA error   with a pipe and a newline"), std::string::npos) << md;
  EXPECT_NE(md.find("**Our bf16 kernels failed on 1 row(s).**"), std::string::npos) << md;
  EXPECT_NE(md.find("| ours bf16 | (some shapes not timed) |"), std::string::npos) << md;
  EXPECT_EQ(md.find("MISMATCH"), std::string::npos);
}

}  // namespace
}  // namespace ddpm::bench
