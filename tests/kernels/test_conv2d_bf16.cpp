// Tests of the bf16 tensor-core convolution (kernels/conv2d_bf16.cuh) against
// the CPU backend's conv2d in f64 (tests/kernels/conv2d_oracle.h), run on the
// same bf16 values the kernel reads.
//
// Bounds, derived. Inputs x, w, dy, residual and the dx prefill are bf16
// values, bias, dw and db prefills fp32 values, all given to the oracle
// exactly. A bf16 x bf16 product has at most 16 significant bits: exact in
// fp32. Each output is then a sum of n terms (the products plus bias,
// residual or prefill) formed in fp32 in some order (the mma's own order, the
// k steps, split partials): |acc - exact| <= gamma_n * sum|terms|, gamma_n =
// n u / (1 - n u) <= (n + 4) u for n u < 0.8, u = 2^-24; sum|terms| is the
// oracle on |inputs| ("magnitude", exact). Times kHardwareRounding = 2: tensor
// cores have been measured to truncate instead of rounding when they add
// (per-operation error < 2u); the emulator's portable mma rounds to nearest.
// Term counts: forward K + 2 (bias, residual); backward-data R S O, + 1 with
// the prefill; backward-filter P + 40 + 1: a product passes through its
// split's chain (<= P / s + 32), the split sum (< s) and the prefill add, and
// P / s + 32 + s <= P + 33 for 1 <= s <= P; db the same (P bf16 terms).
// y and dx are then rounded to bf16 (8 significant bits, nearest): |y - acc|
// <= 2^-8 |acc| <= 2^-8 (|exact| + E). So
//     bf16 outputs: |got - exact| <= E + 2^-8 (|exact| + E)
//     fp32 outputs: |got - exact| <= E,   E = 2 (n + 4) u magnitude.
// Can a wrong term pass? A term is ~ magnitude / n; the fp32 bound is ~ 2 n u
// magnitude (n <= a few hundred here: 1e-5 magnitude), the bf16 bound ~
// 2^-8 |exact| ~ 2^-8 magnitude / sqrt(n); with n <= 360, one term (>= 1/360
// of magnitude) is 2-10x the bf16 bound for a typical element and the check
// covers every element: a dropped tap, a shifted pixel, a wrong channel fail.
//
// Every output starts poisoned (0xFF: NaN) inside guard elements that must
// stay untouched; accumulating outputs start from random prefills. Cases:
// 1x1, 3x3 stride 1 pad 1, 3x3 stride 2 with diffusers' downsample pad
// (0, 1, 0, 1) and with pad 1, a 5x3 kernel at stride 3 with uneven pads
// (phases with different tap counts), 1x1 stride 2 (phases no tap reaches:
// dx = 0), input channels 1, 3, 8, 12, 16, 32, 40 and output channels 3, 8,
// 12, 16, 24, 32, 40 (C % 8 != 0 on both sides: the scalar staging), odd H
// and W, batch 1 and 3, bias and residual (also residual = y), dw / db
// overwrite and accumulate, db null, both tile sizes (forced: the tiny
// problems would always pick 64 x 64), a forced backward-filter split, and
// every bf16 tensor one element past 16-byte alignment (scalar staging and
// scalar epilogue with C % 8 == 0).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/conv2d_bf16.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/conv2d_oracle.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm {
namespace {

using kernels::Conv2dShape;
using testing::ConvOracle;
using testing::expect_within;
using testing::Expected;
using testing::GuardedSlice;
using testing::kFp32Unit;

constexpr double kHardwareRounding = 2;  // see the top
constexpr double kBf16Unit = 1.0 / 256;  // 2^-8: bf16 round to nearest
constexpr int64_t kSplitTerms = 40;

struct Case {
  const char* name;
  Conv2dShape shape;
  int forced_tile = 0;      // 0: the shape decides
  int forced_splits = 0;    // 0: the shape decides
  int offset = 0;           // bf16 elements past 16-byte alignment
  bool under_tsan = false;  // one of the cases the TSan build runs (see kRaceCheckOnly)
};

// TSan looks for shared-memory races, which do not depend on the shape; under
// it the emulator is 20-40x slower than the plain build, so it runs the cases
// marked under_tsan: every kernel instantiation (both tiles of all three ops,
// the vector and scalar staging, the split sums) once. Plain and ASan run all.
#if defined(__SANITIZE_THREAD__)
constexpr bool kRaceCheckOnly = true;
#else
constexpr bool kRaceCheckOnly = false;
#endif

void PrintTo(const Case& k, std::ostream* os) {
  *os << k.name;
}

Conv2dShape conv(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int kh, int kw, int stride,
                 int pt, int pb, int pl, int pr) {
  return Conv2dShape{n, h, w, c, o, kh, kw, stride, pt, pb, pl, pr};
}

class ForcedChoices {
 public:
  ForcedChoices(int tile, int splits) {
    kernels::detail::conv2d_bf16_forced_tile() = tile;
    kernels::detail::conv2d_bf16_forced_splits() = splits;
  }
  ~ForcedChoices() {
    kernels::detail::conv2d_bf16_forced_tile() = 0;
    kernels::detail::conv2d_bf16_forced_splits() = 0;
  }
  ForcedChoices(const ForcedChoices&) = delete;
  ForcedChoices& operator=(const ForcedChoices&) = delete;
};

// ------------------------------------------------------------- bf16 on the host

// A bf16 tensor: its values (exactly representable) and their bits.
struct Bf16Tensor {
  std::vector<float> values;
  std::vector<uint16_t> bits;
};
Bf16Tensor random_bf16(size_t n, uint64_t seed, double scale = 1.0) {
  Bf16Tensor t{testing::round_to_bf16(testing::random_floats(n, seed, scale)), {}};
  for (float v : t.values) t.bits.push_back(testing::to_bf16(v));
  return t;
}
std::vector<float> values_of(const std::vector<uint16_t>& bits) {
  std::vector<float> v;
  for (uint16_t b : bits) v.push_back(testing::from_bf16(b));
  return v;
}

struct Inputs {
  Bf16Tensor x, w, residual, dy, dx0;
  std::vector<float> bias, dw0, db0;
};

Inputs make_inputs(const Conv2dShape& s, uint64_t seed) {
  const size_t x_size = size_t(s.in_pixels() * s.in_channels);
  const size_t y_size = size_t(s.out_pixels() * s.out_channels);
  const size_t w_size = size_t(s.out_channels * s.gemm_k());
  const size_t o = size_t(s.out_channels);
  Inputs in;
  in.x = random_bf16(x_size, seed);
  in.w = random_bf16(w_size, seed + 1, 0.2);
  in.residual = random_bf16(y_size, seed + 3);
  in.dy = random_bf16(y_size, seed + 4);
  in.dx0 = random_bf16(x_size, seed + 5);
  in.bias = testing::random_floats(o, seed + 2);
  in.dw0 = testing::random_floats(w_size, seed + 6);
  in.db0 = testing::random_floats(o, seed + 7);
  return in;
}

// ------------------------------------------------------------- expected values

double accumulation_bound(double magnitude, int64_t terms) {
  return kHardwareRounding * double(terms + 4) * kFp32Unit * magnitude;
}
double bf16_output_bound(double exact, double magnitude, int64_t terms) {
  const double e = accumulation_bound(magnitude, terms);
  return e + kBf16Unit * (std::abs(exact) + e);
}

Expected forward_expected(const Conv2dShape& s, const Inputs& in, bool bias, bool residual) {
  ConvOracle oracle(s);
  const std::vector<float> no_bias;
  Expected e;
  e.value = oracle.forward(in.x.values, in.w.values, bias ? in.bias : no_bias);
  const auto magnitude =
      oracle.forward(testing::absolute(in.x.values), testing::absolute(in.w.values),
                     bias ? testing::absolute(in.bias) : no_bias);
  e.bound.resize(e.value.size());
  for (size_t i = 0; i < e.value.size(); ++i) {
    double mag = magnitude[i];
    if (residual) e.value[i] += in.residual.values[i], mag += std::abs(in.residual.values[i]);
    e.bound[i] = bf16_output_bound(e.value[i], mag, s.gemm_k() + 2);
  }
  return e;
}

struct GradExpected {
  Expected dx, dx_accumulated, dw, dw_accumulated, db, db_accumulated;
};

GradExpected backward_expected(const Conv2dShape& s, const Inputs& in) {
  ConvOracle oracle(s);
  const auto value = oracle.backward(in.x.values, in.w.values, in.dy.values);
  const auto magnitude =
      oracle.backward(testing::absolute(in.x.values), testing::absolute(in.w.values),
                      testing::absolute(in.dy.values));
  const int64_t taps_out = int64_t(s.kernel_h) * s.kernel_w * s.out_channels;
  const int64_t filter_terms = s.out_pixels() + kSplitTerms;
  GradExpected g;
  g.dx = g.dx_accumulated = {value.dx, value.dx};
  for (size_t i = 0; i < value.dx.size(); ++i) {
    g.dx.bound[i] = bf16_output_bound(value.dx[i], magnitude.dx[i], taps_out);
    const double prefill = in.dx0.values[i];
    g.dx_accumulated.value[i] += prefill;
    g.dx_accumulated.bound[i] = bf16_output_bound(
        g.dx_accumulated.value[i], magnitude.dx[i] + std::abs(prefill), taps_out + 1);
  }
  g.dw = g.dw_accumulated = {value.dw, value.dw};
  for (size_t i = 0; i < value.dw.size(); ++i) {
    g.dw.bound[i] = accumulation_bound(magnitude.dw[i], filter_terms);
    g.dw_accumulated.value[i] += in.dw0[i];
    g.dw_accumulated.bound[i] =
        accumulation_bound(magnitude.dw[i] + std::abs(in.dw0[i]), filter_terms + 1);
  }
  // db: the oracle's bias gradient is the column sum of dy (bf16 values).
  g.db = g.db_accumulated = {value.db, value.db};
  for (size_t o = 0; o < value.db.size(); ++o) {
    g.db.bound[o] = accumulation_bound(magnitude.db[o], filter_terms);
    g.db_accumulated.value[o] += in.db0[o];
    g.db_accumulated.bound[o] =
        accumulation_bound(magnitude.db[o] + std::abs(in.db0[o]), filter_terms + 1);
  }
  return g;
}

// ------------------------------------------------------------- running the kernels

const __nv_bfloat16* bf16_ptr(const GuardedSlice<uint16_t>& t) {
  return reinterpret_cast<const __nv_bfloat16*>(t.get());
}
__nv_bfloat16* bf16_out(const GuardedSlice<uint16_t>& t) {
  return reinterpret_cast<__nv_bfloat16*>(t.get());
}

struct KernelRun {
  const Conv2dShape& s;
  size_t offset;
  size_t workspace_bytes = kernels::conv2d_bf16_workspace_bytes(s);
  testing::DeviceArray<char> workspace{workspace_bytes};

  std::vector<float> forward(const Inputs& in, bool bias, bool residual, bool residual_in_y) {
    GuardedSlice<uint16_t> x(in.x.bits, offset), w(in.w.bits, offset);
    GuardedSlice<uint16_t> res(in.residual.bits, offset), y(in.residual.bits.size(), offset);
    GuardedSlice<float> b(in.bias, 0);
    if (residual_in_y) y.upload(in.residual.bits);
    const __nv_bfloat16* residual_ptr = !residual       ? nullptr
                                        : residual_in_y ? bf16_ptr(y)
                                                        : bf16_ptr(res);
    kernels::conv2d_bf16_forward(bf16_ptr(x), bf16_ptr(w), bias ? b.get() : nullptr, residual_ptr,
                                 bf16_out(y), s, nullptr);
    return values_of(y.download());
  }
  std::vector<float> backward_data(const Inputs& in, bool accumulate) {
    GuardedSlice<uint16_t> dy(in.dy.bits, offset), w(in.w.bits, offset);
    GuardedSlice<uint16_t> dx(in.dx0.bits.size(), offset);
    if (accumulate) dx.upload(in.dx0.bits);
    kernels::conv2d_bf16_backward_data(bf16_ptr(dy), bf16_ptr(w), bf16_out(dx), s, accumulate,
                                       nullptr);
    return values_of(dx.download());
  }
  // dw and db (poisoned, or the prefills dw0 / db0 when accumulating); db
  // null when !with_db (then its download is what it held).
  std::pair<std::vector<float>, std::vector<float>> backward_filter(const Inputs& in,
                                                                    bool accumulate, bool with_db) {
    GuardedSlice<uint16_t> x(in.x.bits, offset), dy(in.dy.bits, offset);
    GuardedSlice<float> dw(in.dw0.size(), 0), db(in.db0.size(), 0);
    if (accumulate || !with_db) db.upload(in.db0);
    if (accumulate) dw.upload(in.dw0);
    kernels::conv2d_bf16_backward_filter(bf16_ptr(x), bf16_ptr(dy), dw.get(),
                                         with_db ? db.get() : nullptr, s, accumulate,
                                         workspace.get(), workspace_bytes, nullptr);
    return {dw.download(), db.download()};
  }
};

void check_case(const Case& k, uint64_t seed) {
  const Conv2dShape& s = k.shape;
  const ForcedChoices forced(k.forced_tile, k.forced_splits);
  const Inputs in = make_inputs(s, seed);
  KernelRun run{s, size_t(k.offset)};

  expect_within(run.forward(in, false, false, false), forward_expected(s, in, false, false),
                "forward");
  const Expected with_all = forward_expected(s, in, true, true);
  expect_within(run.forward(in, true, true, false), with_all, "forward + bias + residual");
  expect_within(run.forward(in, true, true, true), with_all, "forward + bias + residual in y");

  const GradExpected g = backward_expected(s, in);
  expect_within(run.backward_data(in, false), g.dx, "backward-data");
  expect_within(run.backward_data(in, true), g.dx_accumulated, "backward-data, accumulating");

  const auto [dw, db] = run.backward_filter(in, false, true);
  expect_within(dw, g.dw, "backward-filter dw");
  expect_within(db, g.db, "backward-filter db");
  const auto [dw_acc, db_acc] = run.backward_filter(in, true, true);
  expect_within(dw_acc, g.dw_accumulated, "backward-filter dw, accumulating");
  expect_within(db_acc, g.db_accumulated, "backward-filter db, accumulating");
  const auto [dw_alone, db_untouched] = run.backward_filter(in, false, false);
  expect_within(dw_alone, g.dw, "backward-filter dw, db null");
  EXPECT_EQ(std::memcmp(db_untouched.data(), in.db0.data(), in.db0.size() * sizeof(float)), 0)
      << "db null: db must be left alone";
}

// ------------------------------------------------------------- the cases

const Case kCases[] = {
    {"3x3_s1_p1_n1_5x7_c8_o16", conv(1, 5, 7, 8, 16, 3, 3, 1, 1, 1, 1, 1), 0, 0, 0, true},
    {"1x1_n3_4x5_c40_o24", conv(3, 4, 5, 40, 24, 1, 1, 1, 0, 0, 0, 0)},
    // diffusers' Downsample2D: pad (0, 1, 0, 1), stride 2.
    {"3x3_s2_p0101_n1_8x8_c16_o8", conv(1, 8, 8, 16, 8, 3, 3, 2, 0, 1, 0, 1)},
    {"3x3_s2_p0101_n3_5x7_c12_o40", conv(3, 5, 7, 12, 40, 3, 3, 2, 0, 1, 0, 1)},
    {"3x3_s2_p1_n1_7x5_c32_o12", conv(1, 7, 5, 32, 12, 3, 3, 2, 1, 1, 1, 1)},
    // The first conv (3 or 1 input channels) and the last (3 output channels).
    {"3x3_s1_p1_n1_6x6_c3_o32", conv(1, 6, 6, 3, 32, 3, 3, 1, 1, 1, 1, 1), 0, 0, 0, true},
    {"3x3_s1_p1_n3_5x3_c1_o8", conv(3, 5, 3, 1, 8, 3, 3, 1, 1, 1, 1, 1)},
    {"3x3_s1_p1_n1_5x7_c32_o3", conv(1, 5, 7, 32, 3, 3, 3, 1, 1, 1, 1, 1)},
    // Phases with 2 and 1 taps each way, and a 1x1 at stride 2 whose odd
    // phases no tap reaches (their dx is 0).
    {"5x3_s3_p2101_n1_7x8_c8_o8", conv(1, 7, 8, 8, 8, 5, 3, 3, 2, 1, 0, 1)},
    {"1x1_s2_n1_5x5_c8_o16", conv(1, 5, 5, 8, 16, 1, 1, 2, 0, 0, 0, 0)},
    // Backward-filter over P = 300 pixels: 10 stages cut into 3 splits.
    {"3x3_s1_p1_n3_10x10_c8_o8_split3", conv(3, 10, 10, 8, 8, 3, 3, 1, 1, 1, 1, 1), 0, 3},
    // Every bf16 tensor 2 bytes past 16-byte alignment: scalar staging.
    {"3x3_s1_p1_n1_5x7_c8_o16_unaligned", conv(1, 5, 7, 8, 16, 3, 3, 1, 1, 1, 1, 1), 0, 0, 1},
    // 128 x 128 tiles: two tiles along M (forward: 144 pixels; backward-data)
    // and along N (backward-filter: K = 144), split in two.
    {"3x3_s1_p1_n1_12x12_c16_o24_large", conv(1, 12, 12, 16, 24, 3, 3, 1, 1, 1, 1, 1), 128, 2},
    {"3x3_s2_p0101_n3_5x7_c12_o40_large", conv(3, 5, 7, 12, 40, 3, 3, 2, 0, 1, 0, 1), 128},
    // The 128 x 128 instantiations on one block each (with a 2-way split), for TSan.
    {"3x3_s1_p1_n1_9x9_c8_o8_large_split2", conv(1, 9, 9, 8, 8, 3, 3, 1, 1, 1, 1, 1), 128, 2, 0,
     true},
    {"3x3_s1_p1_n1_5x7_c40_o24_small", conv(1, 5, 7, 40, 24, 3, 3, 1, 1, 1, 1, 1), 64},
};

class Bf16Conv : public ::testing::TestWithParam<Case> {};

TEST_P(Bf16Conv, MatchesCpuOnBf16Values) {
  DDPM_REQUIRE_DEVICE();
  if (kRaceCheckOnly && !GetParam().under_tsan) GTEST_SKIP() << "not one of TSan's cases";
  check_case(GetParam(), 101);
}

INSTANTIATE_TEST_SUITE_P(Shapes, Bf16Conv, ::testing::ValuesIn(kCases), testing::ParamName());

// Fixed tiling and split order, no atomics: reruns agree bitwise (the
// emulator runs blocks on several workers in no fixed order).
TEST(Bf16ConvKernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  if (kRaceCheckOnly) GTEST_SKIP() << "order, not races: plain and ASan builds";
  const Conv2dShape s = conv(3, 10, 10, 8, 8, 3, 3, 1, 1, 1, 1, 1);
  const ForcedChoices forced(0, 3);
  const Inputs in = make_inputs(s, 7);
  KernelRun run{s, 0};
  auto same = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(run.forward(in, true, true, false), run.forward(in, true, true, false)));
  EXPECT_TRUE(same(run.backward_data(in, true), run.backward_data(in, true)));
  const auto first = run.backward_filter(in, true, true);
  const auto second = run.backward_filter(in, true, true);
  EXPECT_TRUE(same(first.first, second.first) && same(first.second, second.second));
}

TEST(Bf16ConvKernel, WorkspaceOnlyForSplitFilterGradients) {
  // 25 pixels: one stage, one split.
  EXPECT_EQ(kernels::conv2d_bf16_workspace_bytes(conv(1, 5, 5, 8, 8, 3, 3, 1, 1, 1, 1, 1)), 0u);
  const Conv2dShape s = conv(3, 10, 10, 8, 8, 3, 3, 1, 1, 1, 1, 1);
  const ForcedChoices forced(0, 3);
  // dw partials [3][8][72] and db partials [3][8], each rounded up to 256 bytes.
  EXPECT_EQ(kernels::conv2d_bf16_workspace_bytes(s), size_t(6912 + 256));
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no std::invalid_argument)";
}

TEST(Bf16ConvKernel, RejectsBadArgumentsByName) {
  DDPM_REQUIRE_DEVICE();
  const Conv2dShape good = conv(1, 5, 5, 8, 8, 3, 3, 1, 1, 1, 1, 1);
  Conv2dShape bad = good;
  bad.kernel_h = 9;
  EXPECT_EQ(message_of([&] { kernels::conv2d_bf16_validate(bad); }),
            "conv2d_bf16: kernel_h is 9, expected 1..7");
  bad = good;
  bad.pad_left = 3;
  EXPECT_EQ(message_of([&] { kernels::conv2d_bf16_validate(bad); }),
            "conv2d_bf16: pad_left is 3, expected 0..2");
  bad = good;
  bad.stride = 5;
  EXPECT_EQ(message_of([&] { kernels::conv2d_bf16_workspace_bytes(bad); }),
            "conv2d_bf16: stride is 5, expected 1..4");

  testing::DeviceArray<uint16_t> x(200), w(600), y(200);
  testing::DeviceArray<float> dw(600);
  auto* xb = reinterpret_cast<const __nv_bfloat16*>(x.get());
  auto* wb = reinterpret_cast<const __nv_bfloat16*>(w.get());
  EXPECT_EQ(message_of([&] {
              kernels::conv2d_bf16_forward(nullptr, wb, nullptr, nullptr,
                                           reinterpret_cast<__nv_bfloat16*>(y.get()), good,
                                           nullptr);
            }),
            "conv2d_bf16: x is null");
  EXPECT_EQ(message_of([&] {
              kernels::conv2d_bf16_backward_filter(
                  xb, xb, reinterpret_cast<float*>(reinterpret_cast<char*>(dw.get()) + 2), nullptr,
                  good, false, nullptr, 0, nullptr);
            }),
            "conv2d_bf16: dw is not 4-byte aligned");
  const ForcedChoices forced(0, 3);
  const Conv2dShape split = conv(3, 10, 10, 8, 8, 3, 3, 1, 1, 1, 1, 1);
  EXPECT_EQ(message_of([&] {
              kernels::conv2d_bf16_backward_filter(xb, xb, dw.get(), nullptr, split, false, nullptr,
                                                   100, nullptr);
            }),
            "conv2d_bf16: workspace of 100 bytes, this shape needs 7168 "
            "(conv2d_bf16_workspace_bytes)");
}

// batch 0: nothing is read or written.
TEST(Bf16ConvKernel, EmptyBatchIsANoOp) {
  DDPM_REQUIRE_DEVICE();
  const Conv2dShape s = conv(0, 5, 5, 8, 8, 3, 3, 1, 1, 1, 1, 1);
  GuardedSlice<uint16_t> y(8, 0);
  GuardedSlice<float> dw(8, 0);
  const auto* none = reinterpret_cast<const __nv_bfloat16*>(y.get());
  kernels::conv2d_bf16_forward(none, none, nullptr, nullptr, bf16_out(y), s, nullptr);
  kernels::conv2d_bf16_backward_data(none, none, bf16_out(y), s, false, nullptr);
  kernels::conv2d_bf16_backward_filter(none, none, dw.get(), nullptr, s, false, nullptr, 0,
                                       nullptr);
  for (uint16_t b : y.download()) EXPECT_EQ(b, 0xFFFF);
  for (float v : dw.download()) EXPECT_TRUE(std::isnan(v));
}

#if !DDPM_KERNEL_TESTS_EMULATED
// CIFAR-sized layers of the UNet at batch 4: the PTX paths (mma.sync,
// ldmatrix, cp.async) at real sizes, with the tiles and splits the shapes pick.
const Case kGpuCases[] = {
    {"cifar_32x32_c128_o128", conv(4, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_32x32_c128_o128_large", conv(4, 32, 32, 128, 128, 3, 3, 1, 1, 1, 1, 1), 128},
    {"cifar_16x16_c256_o256", conv(4, 16, 16, 256, 256, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_in_32x32_c3_o128", conv(4, 32, 32, 3, 128, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_out_32x32_c128_o3", conv(4, 32, 32, 128, 3, 3, 3, 1, 1, 1, 1, 1)},
    {"cifar_down_32x32_c128_s2", conv(4, 32, 32, 128, 128, 3, 3, 2, 0, 1, 0, 1)},
    {"cifar_skip_1x1_16x16_c128_o256", conv(4, 16, 16, 128, 256, 1, 1, 1, 0, 0, 0, 0)},
};

class Bf16ConvGpu : public ::testing::TestWithParam<Case> {};

TEST_P(Bf16ConvGpu, MatchesCpuOnBf16Values) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), 202);
}

INSTANTIATE_TEST_SUITE_P(Cifar, Bf16ConvGpu, ::testing::ValuesIn(kGpuCases), testing::ParamName());
#endif

}  // namespace
}  // namespace ddpm
