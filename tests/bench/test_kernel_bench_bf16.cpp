// The kernel benchmark's bf16 rows (apps/bench/kernel_bench_bf16.cpp) run
// under the CPU emulator on tiny shapes that take every path the CIFAR-10
// model's do: a 3-channel input (the kernels' scalar staging), a stride-2
// conv with asymmetric pads, a 1x1 conv, two heads on the packed q|k|v
// layout, a linear layer with odd rows. The emulator has no cuDNN or cuBLAS,
// so each check compares our bf16 output with our fp32 kernel's on the same
// inputs: this proves the bench calls each kernel with consistent shapes,
// pointers and buffers (the GPU run then adds the vendor columns). Times
// under the emulator mean nothing and are not looked at.
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "apps/bench/bf16_report.h"
#include "apps/bench/kernel_bench.h"
#include "apps/bench/kernel_bench_bf16.h"
#include "apps/bench/model_shapes.h"

namespace ddpm::bench {
namespace {

ConvLayer conv(int64_t batch, int64_t h, int64_t w, int64_t c, int64_t o, int k, int stride, int pt,
               int pb, int pl, int pr) {
  ConvLayer l;
  l.batch = batch, l.in_h = h, l.in_w = w, l.in_channels = c, l.out_channels = o;
  l.kernel_h = l.kernel_w = k, l.stride = stride;
  l.pad_top = pt, l.pad_bottom = pb, l.pad_left = pl, l.pad_right = pr;
  l.count = 1, l.count_with_input_grad = 1;
  return l;
}

TEST(BenchBf16Emulated, EveryRowRunsAndAgreesWithOurFp32Kernels) {
  ModelShapes m;
  m.convs = {conv(2, 5, 6, 3, 16, 3, 1, 1, 1, 1, 1),   // conv_in-like: C = 3
             conv(1, 8, 8, 16, 8, 3, 2, 0, 1, 0, 1),   // downsampler: stride 2, pads 0,1,0,1
             conv(1, 4, 3, 24, 8, 1, 1, 0, 0, 0, 0)};  // shortcut: 1x1
  m.attentions = {AttentionLayer{2, 9, 2, 8, 1, "attention"}};
  m.linears = {LinearLayer{5, 24, 16, true, 1, "linear"}};
  BenchOptions o;
  o.batch = 2;
  o.warmup = 0;
  o.repeats = 1;
  std::ostringstream progress;
  const std::vector<Bf16Row> rows = run_bf16_bench(m, o, progress);
  ASSERT_EQ(rows.size(), 3u * 3 + 2 + 3) << progress.str();
  for (const Bf16Row& r : rows) {
    SCOPED_TRACE(r.layer + " " + r.op);
    EXPECT_TRUE(r.ours.timed()) << r.ours.note;
    EXPECT_TRUE(r.fp32.timed()) << r.fp32.note;
    EXPECT_FALSE(r.vendor.timed());  // no vendor libraries under the emulator
    if (!r.vendor_name.empty()) {
      EXPECT_EQ(r.vendor.note.rfind("n/a", 0), 0u) << r.vendor.note;
    }
    ASSERT_TRUE(r.check.has_value()) << r.reference;
    EXPECT_EQ(r.reference, "ours fp32");
    EXPECT_TRUE(r.check->ok()) << "relative difference " << r.check->relative();
    EXPECT_GT(r.check->max_ref, 0.0);
  }
  // Every element of each output was compared: y [2,5,6,16], dx [2,5,6,3],
  // dw [16,3,3,3] of the first conv; attention's o [2,9,16] and each of dq,
  // dk, dv [2,9,16] (the row reports the worst of the three); the linear's
  // y [5,16], dx [5,24], dW [16,24].
  const size_t expected[] = {2 * 5 * 6 * 16, 2 * 5 * 6 * 3, 16 * 27, 0,      0,      0, 0, 0, 0,
                             2 * 9 * 16,     2 * 9 * 16,    5 * 16,  5 * 24, 16 * 24};
  for (size_t i = 0; i < rows.size(); ++i)
    if (expected[i] && rows[i].check) {
      EXPECT_EQ(rows[i].check->compared, expected[i]) << i;
    }
  EXPECT_EQ(count_mismatches(rows), 0);
  const std::string md = render_bf16_section(rows, o.batch, o.warmup, o.repeats, "simt");
  EXPECT_EQ(md.find("MISMATCH"), std::string::npos) << md;
}

}  // namespace
}  // namespace ddpm::bench
