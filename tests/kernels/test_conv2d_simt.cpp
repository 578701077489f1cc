// Kernel tests of the fp32 SIMT convolution (kernels/conv2d_simt.cu) through
// its launchers in conv2d_internal.cuh (the dispatcher conv2d.cu also needs
// the tensor-core file; it has its own family), against the CPU backend's
// conv2d op in f64 (conv2d_oracle.h).
//
// Each shape runs every block-tile shape of the kernel (the heuristic's pick,
// then each of the four forced through the test hooks below: small emulated
// problems would otherwise only see the medium tile), so every loader and
// epilogue is exercised on every geometry; backward-filter also runs with
// forced split counts (1, 2, 3, 5: the split-K partials and split_sum_add).
// Outputs live in poisoned slices with guard elements on both sides (unwritten
// outputs read NaN; a write outside fails), at a 16-byte aligned offset and at
// offset 1 float, which sends the kernels down their scalar paths even where
// the channel counts allow float4.
//
// Tolerances: conv2d_oracle.h. Every output is a sum of `terms` products plus
// a few fp32 additions (bias, residual, the accumulated prior, split sums),
// each term rounded at most (terms + 4) times at u = 2^-24 relative:
// |got - exact| <= (terms + 4) u sum|terms|, with sum|terms| from the oracle
// on absolute values (plus |bias|, |residual|, |prior|). terms:
//   forward          K + 2                 (R*S*C products, then + bias, + residual)
//   backward-data    R*S*O + 1             (+ the prior in accumulate mode)
//   backward-filter  P + kSplitAndSumTerms (a split's own pixels, then split_sum_add's
//                                           <= 64 splits, column_sum_add's 8 lanes and
//                                           <= 128 chunks, + the prior)
// Backward-data elements that no output reaches (stride > kernel) have a zero
// bound: they must be exactly 0 (or the prior).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv2d_internal.cuh"
#include "tests/kernels/conv2d_oracle.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;
namespace kd = ddpm::kernels::detail;

constexpr int64_t kSplitAndSumTerms = 64 + 8 + 128 + 1;

// Sets the hooks for one scope.
class ForcedPlan {
 public:
  ForcedPlan(int tile, int splits) {
    kd::conv2d_simt_forced_tile() = tile;
    kd::conv2d_simt_forced_splits() = splits;
  }
  ~ForcedPlan() {
    kd::conv2d_simt_forced_tile() = -1;
    kd::conv2d_simt_forced_splits() = 0;
  }
  ForcedPlan(const ForcedPlan&) = delete;
  ForcedPlan& operator=(const ForcedPlan&) = delete;
};

const char* tile_name(int tile) {
  static const char* const kNames[] = {"heuristic", "large", "medium", "narrow_n", "narrow_m"};
  return kNames[tile + 1];
}

using Slice = GuardedSlice<float>;

// |got - want| <= bound element-wise, every element finite.
void expect_within(const std::vector<float>& got, const std::vector<double>& want,
                   const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  ASSERT_EQ(bound.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " not written";
    ASSERT_LE(std::abs(double(got[i]) - want[i]), bound[i])
        << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
  }
}

std::vector<double> plus(std::vector<double> a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += double(b[i]);
  return a;
}
std::vector<double> plus_abs(std::vector<double> a, const std::vector<float>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += std::abs(double(b[i]));
  return a;
}
// a[p, o] + b[o] over rows of b.size().
std::vector<double> plus_row(std::vector<double> a, const std::vector<float>& b, bool absolute) {
  for (size_t i = 0; i < a.size(); ++i) {
    const double v = b[i % b.size()];
    a[i] += absolute ? std::abs(v) : v;
  }
  return a;
}

// ------------------------------------------------------------------ cases

struct ConvCase {
  std::string name;
  k::Conv2dShape s;
  bool every_plan = true;  // false: the heuristic's plan only (the larger emulated maps)

  size_t x_size() const { return size_t(s.in_pixels() * s.in_channels); }
  size_t w_size() const { return size_t(s.out_channels * s.gemm_k()); }
  size_t y_size() const { return size_t(s.out_pixels() * s.out_channels); }
};

void PrintTo(const ConvCase& c, std::ostream* os) {
  *os << c.name;
}

ConvCase make_case(std::string name, int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int kh,
                   int kw, int stride, int pad_top, int pad_bottom, int pad_left, int pad_right,
                   bool every_plan = true) {
  k::Conv2dShape s;
  s.batch = n, s.in_h = h, s.in_w = w, s.in_channels = c, s.out_channels = o;
  s.kernel_h = kh, s.kernel_w = kw, s.stride = stride;
  s.pad_top = pad_top, s.pad_bottom = pad_bottom, s.pad_left = pad_left, s.pad_right = pad_right;
  return {std::move(name), s, every_plan};  // (validate() is in conv2d.cu, not linked here)
}

// Small shapes for the emulator: each kernel size, stride and padding kind of
// the UNet and beyond, channel counts 3, 5, 40 (float4 and scalar paths), maps
// 5x7, batch 1 and 3, 1x1 outputs, asymmetric kernels and pads.
const std::vector<ConvCase> kEmulatedCases = {
    make_case("k3s1p1_n3_5x7_c40_o40", 3, 5, 7, 40, 40, 3, 3, 1, 1, 1, 1, 1),
    make_case("k3s1p1_n1_5x7_c3_o5", 1, 5, 7, 3, 5, 3, 3, 1, 1, 1, 1, 1),
    make_case("k1_n3_5x7_c40_o5", 3, 5, 7, 40, 5, 1, 1, 1, 0, 0, 0, 0),
    make_case("k1_n1_5x7_c5_o40", 1, 5, 7, 5, 40, 1, 1, 1, 0, 0, 0, 0),
    make_case("k3s2_pad0101_n3_5x7_c40_o40", 3, 5, 7, 40, 40, 3, 3, 2, 0, 1, 0, 1),
    make_case("k3s2_pad0101_n1_8x8_c5_o3", 1, 8, 8, 5, 3, 3, 3, 2, 0, 1, 0, 1),
    make_case("k3s2p1_n3_5x7_c5_o40", 3, 5, 7, 5, 40, 3, 3, 2, 1, 1, 1, 1),
    make_case("k5s1p2_n1_5x7_c12_o8", 1, 5, 7, 12, 8, 5, 5, 1, 2, 2, 2, 2),
    make_case("k7s1p3_n3_5x7_c3_o12", 3, 5, 7, 3, 12, 7, 7, 1, 3, 3, 3, 3),
    make_case("k3x5s3_pad2011_n3_5x7_c5_o5", 3, 5, 7, 5, 5, 3, 5, 3, 2, 0, 1, 1),
    make_case("k1s2_n1_5x7_c40_o40", 1, 5, 7, 40, 40, 1, 1, 2, 0, 0, 0, 0),
    make_case("out1x1_k3p0_n3_3x3_c40_o40", 3, 3, 3, 40, 40, 3, 3, 1, 0, 0, 0, 0),
    make_case("out1x1_k7s4_n1_5x7_c5_o3", 1, 5, 7, 5, 3, 7, 7, 4, 1, 1, 0, 0),
    make_case("out1x1_k1_n1_1x1_c3_o5", 1, 1, 1, 3, 5, 1, 1, 1, 0, 0, 0, 0),
    // P = 768: the heuristic splits backward-filter (2 splits).
    make_case("k3s1p1_n3_16x16_c8_o24", 3, 16, 16, 8, 24, 3, 3, 1, 1, 1, 1, 1, false),
    // P = 1200: db over several column_sum chunks, in the workspace after 3 split partials.
    make_case("k3s1p1_n3_20x20_c8_o12", 3, 20, 20, 8, 12, 3, 3, 1, 1, 1, 1, 1, false),
};

// The tiles each operation runs with, and backward-filter's split counts
// beside them (0: the heuristic's).
struct Plan {
  int tile, splits;
};
const Plan kPlans[] = {{-1, 0}, {0, 2}, {1, 1}, {2, 3}, {3, 5}};

// One launch of a test: a plan, an offset (0: aligned; 1 float: scalar paths)
// and one of an operation's `variants` (bias / residual / aliasing, overwrite
// / accumulate, with / without db). Not the full product (TSan's budget):
// plan i runs variant i aligned and variant i + variants / 2 misaligned
// (mod variants), so each variant meets several tiles both ways; the
// heuristic's plan also runs every variant aligned.
struct LaunchRun {
  Plan plan;
  size_t offset;
  int variant;
};

std::vector<LaunchRun> runs(const ConvCase& c, int variants) {
  std::vector<LaunchRun> out;
  for (int v = 0; v < variants; ++v) out.push_back({kPlans[0], 0, v});
  for (int i = 0; i < (c.every_plan ? 5 : 1); ++i) {
    if (i > 0) out.push_back({kPlans[i], 0, i % variants});
    out.push_back({kPlans[i], 1, (i + variants / 2) % variants});
  }
  return out;
}

std::string run_label(const char* op, const LaunchRun& r, const char* variant) {
  return std::string(op) + ", " + tile_name(r.plan.tile) + " tile, " + variant +
         (r.offset ? ", misaligned" : "");
}

class SimtConv : public ::testing::TestWithParam<ConvCase> {};

// ------------------------------------------------------------------ forward

TEST_P(SimtConv, Forward) {
  DDPM_REQUIRE_DEVICE();
  const ConvCase& c = GetParam();
  const k::Conv2dShape& s = c.s;
  const std::vector<float> x = random_floats(c.x_size(), 1);
  const std::vector<float> w = random_floats(c.w_size(), 2);
  const std::vector<float> bias = random_floats(size_t(s.out_channels), 3);
  const std::vector<float> residual = random_floats(c.y_size(), 4);
  ConvOracle oracle(s);
  const std::vector<double> conv = oracle.forward(x, w, {});
  const std::vector<double> conv_mag = oracle.forward(absolute(x), absolute(w), {});
  const int64_t terms = s.gemm_k() + 2;
  struct Variant {
    const char* name;
    bool bias, residual, alias;
  };
  const Variant kVariants[] = {{"bias + residual in y", true, true, true},
                               {"no bias, no residual", false, false, false},
                               {"bias + residual", true, true, false},
                               {"residual only", false, true, false}};
  for (const LaunchRun& run : runs(c, 4)) {
    const Variant& v = kVariants[run.variant];
    const std::string what = run_label("forward", run, v.name);
    SCOPED_TRACE(what);
    ForcedPlan forced(run.plan.tile, 0);
    const size_t offset = run.offset;
    const Slice dx(x, offset), dw(w, offset), dbias(bias, offset), dres(residual, offset);
    Slice y(c.y_size(), offset);
    if (v.alias) y.upload(residual);
    DeviceArray<char> workspace(kd::conv2d_simt_workspace_bytes(s));
    kd::conv2d_simt_forward(dx.get(), dw.get(), v.bias ? dbias.get() : nullptr,
                            v.residual ? (v.alias ? y.get() : dres.get()) : nullptr, y.get(), s,
                            workspace.get(), nullptr);
    check_cuda(cudaGetLastError(), "forward");
    std::vector<double> want = conv, mag = conv_mag;
    if (v.bias) want = plus_row(want, bias, false), mag = plus_row(mag, bias, true);
    if (v.residual) want = plus(want, residual), mag = plus_abs(mag, residual);
    expect_within(y.download(), want, accumulation_bound(mag, terms), what);
    if (HasFatalFailure()) return;
  }
}

// ------------------------------------------------------------------ backward-data

TEST_P(SimtConv, BackwardData) {
  DDPM_REQUIRE_DEVICE();
  const ConvCase& c = GetParam();
  const k::Conv2dShape& s = c.s;
  const std::vector<float> x = random_floats(c.x_size(), 5);
  const std::vector<float> w = random_floats(c.w_size(), 6);
  const std::vector<float> dy = random_floats(c.y_size(), 7);
  const std::vector<float> prior = random_floats(c.x_size(), 8);
  ConvOracle oracle(s);
  const std::vector<double> dx = oracle.backward(x, w, dy).dx;
  const std::vector<double> dx_mag = oracle.backward(absolute(x), absolute(w), absolute(dy)).dx;
  const int64_t terms = s.kernel_h * s.kernel_w * s.out_channels + 1;
  for (const LaunchRun& run : runs(c, 2)) {
    const bool accumulate = run.variant == 0;
    const std::string what =
        run_label("backward-data", run, accumulate ? "accumulate" : "overwrite");
    SCOPED_TRACE(what);
    ForcedPlan forced(run.plan.tile, 0);
    const Slice ddy(dy, run.offset), dw(w, run.offset);
    Slice out(c.x_size(), run.offset);
    if (accumulate) out.upload(prior);
    DeviceArray<char> workspace(kd::conv2d_simt_workspace_bytes(s));
    kd::conv2d_simt_backward_data(ddy.get(), dw.get(), out.get(), s, accumulate, workspace.get(),
                                  nullptr);
    check_cuda(cudaGetLastError(), "backward-data");
    const std::vector<double> want = accumulate ? plus(dx, prior) : dx;
    const std::vector<double> mag = accumulate ? plus_abs(dx_mag, prior) : dx_mag;
    expect_within(out.download(), want, accumulation_bound(mag, terms), what);
    if (HasFatalFailure()) return;
  }
}

// ------------------------------------------------------------------ backward-filter

TEST_P(SimtConv, BackwardFilter) {
  DDPM_REQUIRE_DEVICE();
  const ConvCase& c = GetParam();
  const k::Conv2dShape& s = c.s;
  const std::vector<float> x = random_floats(c.x_size(), 9);
  const std::vector<float> w = random_floats(c.w_size(), 10);
  const std::vector<float> dy = random_floats(c.y_size(), 11);
  const std::vector<float> dw_prior = random_floats(c.w_size(), 12);
  const std::vector<float> db_prior = random_floats(size_t(s.out_channels), 13);
  ConvOracle oracle(s);
  const ConvOracle::Grads g = oracle.backward(x, w, dy);
  const ConvOracle::Grads mag = oracle.backward(absolute(x), absolute(w), absolute(dy));
  const int64_t terms = s.out_pixels() + kSplitAndSumTerms;
  const std::vector<double> dw_bound = accumulation_bound(plus_abs(mag.dw, dw_prior), terms);
  const std::vector<double> db_bound = accumulation_bound(plus_abs(mag.db, db_prior), terms);
  for (const LaunchRun& run : runs(c, 2)) {
    const bool with_db = run.variant == 0;
    const std::string what =
        run_label("backward-filter", run, with_db ? "dw and db" : "dw, db null") + ", splits " +
        std::to_string(run.plan.splits);
    SCOPED_TRACE(what);
    ForcedPlan forced(run.plan.tile, run.plan.splits);
    const Slice dx(x, run.offset), ddy(dy, run.offset);
    Slice dw(c.w_size(), run.offset), db(size_t(s.out_channels), run.offset);
    DeviceArray<char> workspace(kd::conv2d_simt_workspace_bytes(s));
    std::vector<float> first;
    // Aligned runs go twice from the same prior (a fresh poisoned workspace):
    // the results must be bitwise equal.
    for (int repeat = 0; repeat < (run.offset == 0 ? 2 : 1); ++repeat) {
      dw.upload(dw_prior);
      db.upload(db_prior);
      workspace.poison();
      kd::conv2d_simt_backward_filter(dx.get(), ddy.get(), dw.get(), with_db ? db.get() : nullptr,
                                      s, workspace.get(), nullptr);
      check_cuda(cudaGetLastError(), "backward-filter");
      const std::vector<float> got = dw.download();
      if (repeat == 1) {
        EXPECT_EQ(std::memcmp(got.data(), first.data(), got.size() * sizeof(float)), 0)
            << "two runs differ";
        break;
      }
      first = got;
      expect_within(got, plus(g.dw, dw_prior), dw_bound, what + ": dw");
      const std::vector<float> got_db = db.download();
      if (with_db)
        expect_within(got_db, plus(g.db, db_prior), db_bound, what + ": db");
      else
        EXPECT_EQ(std::memcmp(got_db.data(), db_prior.data(), db_prior.size() * sizeof(float)), 0)
            << "db was written though null was passed";
      if (HasFatalFailure()) return;
    }
  }
}

std::string case_label(const ::testing::TestParamInfo<ConvCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, SimtConv, ::testing::ValuesIn(kEmulatedCases), case_label);

// The workspace is what backward-filter needs: nothing for an unsplit small
// map; the heuristic's split partials at P = 768; column_sum_add's chunk sums
// as well at P = 1200; splits x O x K floats when forced.
TEST(SimtConvWorkspace, CoversTheSplitPartials) {
  const auto shape_of = [](const std::string& name) {
    for (const ConvCase& c : kEmulatedCases)
      if (c.name == name) return c.s;
    throw std::invalid_argument(name);
  };
  const k::Conv2dShape small = shape_of("k3s1p1_n3_5x7_c40_o40");
  EXPECT_EQ(kd::conv2d_simt_workspace_bytes(small), 0u);
  const k::Conv2dShape split = shape_of("k3s1p1_n3_16x16_c8_o24");
  EXPECT_GE(kd::conv2d_simt_workspace_bytes(split),
            2 * size_t(split.out_channels * split.gemm_k()) * 4);
  const k::Conv2dShape chunked = shape_of("k3s1p1_n3_20x20_c8_o12");
  EXPECT_GE(kd::conv2d_simt_workspace_bytes(chunked),
            2 * size_t(chunked.out_channels * chunked.gemm_k()) * 4 + 2 * 12 * 4);
  ForcedPlan forced(1, 3);
  EXPECT_GE(kd::conv2d_simt_workspace_bytes(small),
            3 * size_t(small.out_channels * small.gemm_k()) * 4);
}

#if !DDPM_KERNEL_TESTS_EMULATED
// CIFAR-10 UNet shapes at batch 4 (the model runs batch 128; the oracle runs
// on the CPU): the 32x32 and 16x16 3x3 convs, the stride-2 downsample, a 1x1
// skip projection, conv_in (C = 3) and conv_out (O = 3). Large enough for the
// heuristic to pick large tiles and split backward-filter.
const std::vector<ConvCase> kCifarCases = {
    make_case("cifar_k3_32x32_c128_o128", 4, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1),
    make_case("cifar_k3_16x16_c256_o256", 4, 16, 16, 256, 256, 3, 3, 1, 1, 1, 1, 1),
    make_case("cifar_down_k3s2_32x32_c128", 4, 32, 32, 128, 128, 3, 3, 2, 0, 1, 0, 1),
    make_case("cifar_skip_k1_16x16_c128_o256", 4, 16, 16, 128, 256, 1, 1, 1, 0, 0, 0, 0),
    make_case("cifar_conv_in_k3_32x32_c3_o128", 4, 32, 32, 3, 128, 3, 3, 1, 1, 1, 1, 1),
    make_case("cifar_conv_out_k3_32x32_c128_o3", 4, 32, 32, 128, 3, 3, 3, 1, 1, 1, 1, 1),
};
INSTANTIATE_TEST_SUITE_P(Cifar, SimtConv, ::testing::ValuesIn(kCifarCases), case_label);
#endif

}  // namespace
}  // namespace ddpm::testing
