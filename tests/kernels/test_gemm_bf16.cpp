// Kernel tests of gemm_bf16.cuh (see kernel_test_util.h): the bf16
// tensor-core GEMM in both block tiles, every transpose combination (the
// linear layers' forward, dx and dW products and the fourth), bf16 and fp32
// outputs with bias and accumulate, odd sizes and tails, the scalar staging
// path (k % 8 != 0, unaligned pointers), split-K (forced and automatic) and
// its determinism, against a double-precision loop on the same bf16 inputs.
//
// Oracle: operands are random N(0, 1) values rounded to bf16 on the host, so
// kernel and oracle multiply the same numbers. want[i][j] = (accumulate ?
// C0[i][j] : 0) + sum_p opA(i,p) opB(p,j) + bias[j] in double, and mag[i][j]
// the same sum of absolute values.
//
// Tolerance (derived):
//   - A product of two bf16 (8 significant bits each) is exact in fp32 (16 <= 24).
//   - The sum has k + 2 terms (k products, bias, prior C) added in fp32 in
//     some tree (mma's k order, the split partials in split order, the
//     epilogue's two adds): each term goes through at most k + 1 roundings.
//     With round-to-nearest each is a relative error of u = 2^-24; the tensor
//     cores align an instruction's products to the largest exponent and
//     truncate (Fasi, Higham, Mikaitis, Pranesh, "Numerical behavior of NVIDIA
//     tensor cores", PeerJ CS 2021), up to 2u of the largest term of that
//     step, itself at most the step's sum of magnitudes. Allowing 2u per
//     rounding for that: |acc - want| <= e = 2 (k + 1) u mag / (1 - 2 (k + 1) u).
//   - fp32 output: tol = e. bf16 output: one more rounding to nearest of the
//     fp32 result, relative 2^-8 (8 significant bits): tol = e + 2^-8 (|want| + e).
// Power: one missing or doubled product (|a b| ~ mag / k, ~0.6 on average)
// exceeds a bf16 output's 2^-8 |want| (|want| ~ sqrt(k)) for k up to ~10^4,
// and an fp32 output's e (~ 2^-22 k mag) by orders of magnitude here (k <= 520).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/gemm_bf16.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

using kernels::GemmBf16Plan;
using kernels::GemmBf16Tile;

// kU (fp32) and kUBf16 (bf16 unit roundoff), to_bf16 and from_bf16: bf16_host.h.

// ------------------------------------------------------------- bf16 on the host

std::vector<uint16_t> random_bf16(size_t n, uint64_t seed) {
  std::vector<uint16_t> v(n);
  const std::vector<float> f = random_floats(n, seed);
  for (size_t i = 0; i < n; ++i) v[i] = to_bf16(f[i]);
  return v;
}

const __nv_bfloat16* as_bf16(const uint16_t* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

// ------------------------------------------------------------- cases

struct Dims {
  int64_t m, n, k;
};

enum class Out { bf16, f32 };

// One call: dimensions, transposes, output type, bias and accumulate, and
// how it runs (the automatic plan, or a forced tile and split count).
struct Case {
  Dims d;
  bool trans_a = false, trans_b = false;
  Out out = Out::bf16;
  bool bias = false, accumulate = false;
  size_t offset = 0;  // elements: every array starts this far into its allocation
  bool forced = false;
  GemmBf16Tile tile = GemmBf16Tile::tile64x64;
  int64_t splits = 1;
};

std::string describe(const Case& c) {
  std::string s = std::to_string(c.d.m) + "x" + std::to_string(c.d.n) + "x" +
                  std::to_string(c.d.k) + (c.trans_a ? " A^T" : " A") +
                  (c.trans_b ? " B^T" : " B") + (c.out == Out::bf16 ? " ->bf16" : " ->f32") +
                  (c.bias ? " bias" : "") + (c.accumulate ? " accumulate" : "") +
                  (c.offset ? " unaligned" : "");
  if (c.forced)
    s += std::string(" tile ") + kernels::gemm_bf16_tile_name(c.tile) + " splits " +
         std::to_string(c.splits);
  return s;
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

struct Operands {
  std::vector<uint16_t> a, b;  // bf16 bits, stored as the transposes say
  std::vector<float> bias;
  std::vector<uint16_t> c0_bf16;  // prior C for accumulate
  std::vector<float> c0_f32;
};

Operands make_operands(const Case& c, uint64_t seed) {
  Operands o;
  o.a = random_bf16(size_t(c.d.m * c.d.k), seed);
  o.b = random_bf16(size_t(c.d.k * c.d.n), seed + 1);
  if (c.bias) o.bias = random_floats(size_t(c.d.n), seed + 2);
  if (c.accumulate) {
    if (c.out == Out::bf16)
      o.c0_bf16 = random_bf16(size_t(c.d.m * c.d.n), seed + 3);
    else
      o.c0_f32 = random_floats(size_t(c.d.m * c.d.n), seed + 3);
  }
  return o;
}

double op_a(const Case& c, const Operands& o, int64_t i, int64_t p) {
  return from_bf16(c.trans_a ? o.a[size_t(p * c.d.m + i)] : o.a[size_t(i * c.d.k + p)]);
}
double op_b(const Case& c, const Operands& o, int64_t p, int64_t j) {
  return from_bf16(c.trans_b ? o.b[size_t(j * c.d.k + p)] : o.b[size_t(p * c.d.n + j)]);
}

// want and the header comment's tolerance, row-major [m][n].
void reference(const Case& c, const Operands& o, std::vector<double>& want,
               std::vector<double>& tol) {
  const int64_t m = c.d.m, n = c.d.n, k = c.d.k;
  want.assign(size_t(m * n), 0.0);
  tol.assign(size_t(m * n), 0.0);
  const double rounds = double(k + 1), acc_u = 2 * rounds * kU / (1 - 2 * rounds * kU);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, mag = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double t = op_a(c, o, i, p) * op_b(c, o, p, j);
        sum += t, mag += std::abs(t);
      }
      if (c.bias) sum += o.bias[size_t(j)], mag += std::abs(o.bias[size_t(j)]);
      if (c.accumulate) {
        const double prior = c.out == Out::bf16 ? from_bf16(o.c0_bf16[size_t(i * n + j)])
                                                : double(o.c0_f32[size_t(i * n + j)]);
        sum += prior, mag += std::abs(prior);
      }
      const double e = acc_u * mag;
      want[size_t(i * n + j)] = sum;
      tol[size_t(i * n + j)] = c.out == Out::bf16 ? e + kUBf16 * (std::abs(sum) + e) : e;
    }
}

// ------------------------------------------------------------- running

GemmBf16Plan plan_of(const Case& c) {
  return c.forced ? kernels::detail::gemm_bf16_make_plan(c.tile, c.splits, c.d.k)
                  : kernels::gemm_bf16_plan(c.d.m, c.d.n, c.d.k);
}

// C as floats (bf16 outputs widened), the guards checked.
std::vector<float> run(const Case& c, const Operands& o) {
  GuardedSlice<uint16_t> a(o.a, c.offset), b(o.b, c.offset);
  GuardedSlice<float> bias(o.bias, c.offset);
  const size_t count = size_t(c.d.m * c.d.n);
  const size_t workspace_bytes =
      kernels::detail::gemm_bf16_plan_workspace_bytes(plan_of(c), c.d.m, c.d.n);
  DeviceArray<float> workspace((workspace_bytes + 3) / 4);  // poisoned: NaN partials show
  const float* bias_ptr = c.bias ? bias.get() : nullptr;
  auto call = [&](void* out, bool is_bf16) {
    if (c.forced)
      kernels::detail::gemm_bf16_with_plan(
          c.trans_a, c.trans_b, c.d.m, c.d.n, c.d.k, as_bf16(a.get()), as_bf16(b.get()), bias_ptr,
          out, is_bf16, c.accumulate, workspace.get(), plan_of(c), nullptr);
    else if (is_bf16)
      kernels::gemm_bf16(c.trans_a, c.trans_b, c.d.m, c.d.n, c.d.k, as_bf16(a.get()),
                         as_bf16(b.get()), bias_ptr, static_cast<__nv_bfloat16*>(out), c.accumulate,
                         workspace.get(), nullptr);
    else
      kernels::gemm_bf16(c.trans_a, c.trans_b, c.d.m, c.d.n, c.d.k, as_bf16(a.get()),
                         as_bf16(b.get()), bias_ptr, static_cast<float*>(out), c.accumulate,
                         workspace.get(), nullptr);
  };
  std::vector<float> got(count);
  if (c.out == Out::bf16) {
    GuardedSlice<uint16_t> out(count, c.offset);
    if (c.accumulate) out.upload(o.c0_bf16);
    call(out.get(), true);
    const std::vector<uint16_t> bits = out.download();
    for (size_t i = 0; i < count; ++i) got[i] = from_bf16(bits[i]);
  } else {
    GuardedSlice<float> out(count, c.offset);
    if (c.accumulate) out.upload(o.c0_f32);
    call(out.get(), false);
    got = out.download();
  }
  return got;
}

void check_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  const Operands o = make_operands(c, seed);
  const std::vector<float> got = run(c, o);
  std::vector<double> want, tol;
  reference(c, o, want, tol);
  double worst = 0;
  for (size_t idx = 0; idx < got.size(); ++idx) {
    const int64_t i = int64_t(idx) / c.d.n, j = int64_t(idx) % c.d.n;
    ASSERT_TRUE(std::isfinite(got[idx]))
        << describe(c) << ": C[" << i << "][" << j << "] not written (or not finite)";
    ASSERT_NEAR(got[idx], want[idx], tol[idx]) << describe(c) << ": C[" << i << "][" << j << "]";
    if (tol[idx] > 0) worst = std::max(worst, std::abs(got[idx] - want[idx]) / tol[idx]);
  }
  ::testing::Test::RecordProperty("worst_error_over_tolerance", sci(worst));
}

// The epilogue variants, cycled over a test's calls: the forward's (bf16,
// bias), dx's (bf16, accumulate), dW's (fp32, accumulate) and both extras.
struct Mode {
  Out out;
  bool bias, accumulate;
};
constexpr Mode kModes[] = {{Out::bf16, true, false}, {Out::bf16, false, true},
                           {Out::f32, false, true},  {Out::f32, true, false},
                           {Out::bf16, true, true},  {Out::f32, false, false}};

Case with_mode(Case c, const Mode& mode) {
  c.out = mode.out, c.bias = mode.bias, c.accumulate = mode.accumulate;
  return c;
}

// ------------------------------------------------------------- tiles x layouts

struct Variant {
  GemmBf16Tile tile;
  bool trans_a, trans_b;
};

std::string variant_name(const Variant& v) {
  return std::string("tile") + kernels::gemm_bf16_tile_name(v.tile) + (v.trans_a ? "_At" : "_A") +
         (v.trans_b ? "_Bt" : "_B");
}

void PrintTo(const Variant& v, std::ostream* os) {
  *os << variant_name(v);
}

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (GemmBf16Tile t : {GemmBf16Tile::tile128x128, GemmBf16Tile::tile64x64})
    for (int tr = 0; tr < 4; ++tr) v.push_back({t, (tr & 1) != 0, (tr & 2) != 0});
  return v;
}

class GemmBf16Variant : public ::testing::TestWithParam<Variant> {};

// Each kernel (tile x transposes) on the cp.async path (every contiguous
// extent a multiple of 8, k = 104 over 4 stages: the 3-buffer ring wraps, the
// last stage a tail of 8) and on the scalar path (odd sizes, k % 8 != 0),
// each in another epilogue. The small tile runs several blocks with tails in
// m and n; the big one (7x the emulated cost per block) one block with tails,
// some of its warps wholly outside the matrix. Sizes are the emulator's
// budget (TSan: ~0.5 s per big block-stage).
TEST_P(GemmBf16Variant, MatchesDoubleLoop) {
  DDPM_REQUIRE_DEVICE();
  const Variant v = GetParam();
  const bool big = v.tile == GemmBf16Tile::tile128x128;
  std::vector<Dims> shapes;
  if (big)
    shapes = {{120, 72, 104}, {65, 127, 9}};
  else
    shapes = {{72, 40, 104}, {65, 63, 67}, {7, 33, 3}};
  uint64_t seed = 1000 + 100 * uint64_t(v.trans_a) + 200 * uint64_t(v.trans_b);
  int mode = int(v.trans_a) + 2 * int(v.trans_b) + (big ? 3 : 0);
  for (const Dims& d : shapes) {
    Case c{d, v.trans_a, v.trans_b};
    c.forced = true, c.tile = v.tile;
    check_case(with_mode(c, kModes[mode++ % 6]), seed += 10);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, GemmBf16Variant, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& i) {
                           std::string s = variant_name(i.param);
                           std::replace(s.begin(), s.end(), '_', 'x');
                           return s;
                         });

// ------------------------------------------------------------- shapes, paths

// Through gemm_bf16(): odd and tiny sizes (1, 7, 33, 65; k = 1, 3, 9, 33,
// 40), each in two transposes (all four over the list) and two epilogues.
TEST(GemmBf16, OddShapesPublicApi) {
  DDPM_REQUIRE_DEVICE();
  const Dims shapes[] = {{1, 1, 1}, {7, 33, 3}, {33, 7, 40}, {65, 1, 9}, {1, 65, 33}, {33, 65, 40}};
  uint64_t seed = 2000;
  int mode = 0, tr = 0;
  for (const Dims& d : shapes)
    for (int rep = 0; rep < 2; ++rep, ++tr) {
      const Case c{d, (tr & 1) != 0, (tr & 2) != 0};
      check_case(with_mode(c, kModes[mode++ % 6]), seed += 10);
      if (HasFatalFailure()) return;
    }
}

// Arrays one element past 16-byte alignment: extents that would take the
// cp.async path take the scalar one (and unpaired epilogue stores).
TEST(GemmBf16, UnalignedPointers) {
  DDPM_REQUIRE_DEVICE();
  uint64_t seed = 3000;
  int mode = 0;
  for (int tr = 0; tr < 4; ++tr) {
    Case c{{40, 48, 48}, (tr & 1) != 0, (tr & 2) != 0};
    c.offset = 1;
    check_case(with_mode(c, kModes[mode++ % 6]), seed += 10);
    if (HasFatalFailure()) return;
  }
}

// One operand vectorised and the other scalar: the dx product with k = out
// % 8 == 0 but n = in % 8 != 0 (A by cp.async, B by scalar loads), and the
// forward with k % 8 != 0 (both scalar) next to k % 8 == 0.
TEST(GemmBf16, MixedStagingPaths) {
  DDPM_REQUIRE_DEVICE();
  check_case(with_mode({{40, 36, 72}, false, false}, kModes[1]), 3100);
  check_case(with_mode({{40, 36, 72}, true, false}, kModes[2]), 3110);
  check_case(with_mode({{40, 36, 70}, false, true}, kModes[0]), 3120);
  check_case(with_mode({{40, 36, 72}, false, true}, kModes[4]), 3130);
}

// ------------------------------------------------------------- split-K

// Forced splits of k on both tiles, every layout, every epilogue of the
// second pass: k = 200 is 7 stages, 3 splits of 3, 3, 1 stages (a short last
// split); 2 splits with a k tail and odd n (unpaired partial stores); one
// split per stage, the last holding one element of k.
TEST(GemmBf16, SplitKMatchesDoubleLoop) {
  DDPM_REQUIRE_DEVICE();
  struct Split {
    Dims d;
    GemmBf16Tile tile;
    int64_t splits;
    bool trans_a, trans_b;
  };
  const Split cases[] = {
      {{40, 36, 200}, GemmBf16Tile::tile64x64, 3, true, false},   // dW
      {{40, 36, 200}, GemmBf16Tile::tile64x64, 3, false, true},   // forward
      {{33, 7, 67}, GemmBf16Tile::tile64x64, 2, false, false},    // dx, scalar, odd n
      {{100, 9, 96}, GemmBf16Tile::tile128x128, 3, true, false},  // a split per stage
      {{9, 16, 72}, GemmBf16Tile::tile64x64, 3, true, true},      // the fourth layout
      {{17, 10, 65}, GemmBf16Tile::tile64x64, 3, false, true},    // last split: 1 of k
  };
  uint64_t seed = 4000;
  int mode = 2;
  for (const Split& s : cases) {
    Case c{s.d, s.trans_a, s.trans_b};
    c.forced = true, c.tile = s.tile, c.splits = s.splits;
    ASSERT_EQ(plan_of(c).splits, s.splits) << describe(c);
    check_case(with_mode(c, kModes[mode++ % 6]), seed += 10);
    if (HasFatalFailure()) return;
  }
}

// The automatic plan splits a long k over few tiles: 5 x 9 with k = 520 is
// one small tile and 17 stages, 2 splits of at least 8 stages.
TEST(GemmBf16, SplitKAutomatic) {
  DDPM_REQUIRE_DEVICE();
  const GemmBf16Plan plan = kernels::gemm_bf16_plan(5, 9, 520);
  EXPECT_EQ(plan.splits, 2);
  EXPECT_GT(kernels::gemm_bf16_workspace_bytes(5, 9, 520), 0u);
  check_case(with_mode({{5, 9, 520}, true, false}, kModes[4]), 4100);
}

// A fixed summation order: two runs give bitwise the same C, split or not.
TEST(GemmBf16, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  // 3 splits: the order of two would not show (a + b == b + a in floating point).
  for (int64_t splits : {1, 3}) {
    Case c{{40, 36, 96}, true, false, Out::f32, true, false};
    c.forced = true, c.splits = splits;
    const Operands o = make_operands(c, 5000);
    ASSERT_EQ(plan_of(c).splits, splits);
    const std::vector<float> first = run(c, o), second = run(c, o);
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0)
        << describe(c);
  }
}

// The plans of the UNet's linear layers (CIFAR model, batch 128, 16 x 16
// attention: 32768 tokens of 256 channels) and the time-embedding MLP.
TEST(GemmBf16, PlanChoice) {
  using kernels::gemm_bf16_plan;
  const GemmBf16Plan qkv = gemm_bf16_plan(32768, 256, 256);  // 512 big tiles
  EXPECT_EQ(qkv.tile, GemmBf16Tile::tile128x128);
  EXPECT_EQ(qkv.splits, 1);
  EXPECT_EQ(kernels::gemm_bf16_workspace_bytes(32768, 256, 256), 0u);
  const GemmBf16Plan batch16 = gemm_bf16_plan(4096, 256, 256);  // 64 big, 256 small tiles
  EXPECT_EQ(batch16.tile, GemmBf16Tile::tile64x64);
  EXPECT_EQ(batch16.splits, 1);
  // dW of a projection: 4 big tiles; 1024 stages in 64 splits of 16 (~2 blocks an SM).
  const GemmBf16Plan dw = gemm_bf16_plan(256, 256, 32768);
  EXPECT_EQ(dw.tile, GemmBf16Tile::tile128x128);
  EXPECT_EQ(dw.splits, 64);
  EXPECT_EQ(dw.stages_per_split, 16);
  EXPECT_EQ(kernels::gemm_bf16_workspace_bytes(256, 256, 32768), size_t(64) * 256 * 256 * 4);
  const GemmBf16Plan mlp = gemm_bf16_plan(128, 512, 128);  // 4 stages: too short to split
  EXPECT_EQ(mlp.tile, GemmBf16Tile::tile64x64);
  EXPECT_EQ(mlp.splits, 1);
  // k = 512 is too short for the big tile to reach ~264 blocks: 16 small tiles x 2 splits.
  const GemmBf16Plan short_k = gemm_bf16_plan(256, 256, 512);
  EXPECT_EQ(short_k.tile, GemmBf16Tile::tile64x64);
  EXPECT_EQ(short_k.splits, 2);
  EXPECT_EQ(gemm_bf16_plan(1, 1, 0).splits, 1);
  // A forced plan never has an empty split: 7 stages asked in 5 become 4 of 2.
  const GemmBf16Plan forced = kernels::detail::gemm_bf16_make_plan(GemmBf16Tile::tile64x64, 5, 200);
  EXPECT_EQ(forced.splits, 4);
  EXPECT_EQ(forced.stages_per_split, 2);
}

// ------------------------------------------------------------- edges, errors

// k = 0: C = bias (or 0), or C += bias with accumulate; a and b may be null.
TEST(GemmBf16, EmptyProduct) {
  DDPM_REQUIRE_DEVICE();
  uint64_t seed = 6000;
  for (const Mode& mode : kModes) check_case(with_mode({{5, 7, 0}, false, true}, mode), seed += 10);
  GuardedSlice<uint16_t> c(35, 0);
  kernels::gemm_bf16(false, true, 5, 7, 0, nullptr, nullptr, nullptr,
                     reinterpret_cast<__nv_bfloat16*>(c.get()), false, nullptr, nullptr);
  for (uint16_t v : c.download()) EXPECT_EQ(v, 0u);
}

// m or n = 0: nothing is written (C keeps its poison, no pointer is read).
TEST(GemmBf16, EmptyOutputIsNoOp) {
  DDPM_REQUIRE_DEVICE();
  GuardedSlice<float> c(4, 0);
  kernels::gemm_bf16(false, false, 0, 4, 3, nullptr, nullptr, nullptr, c.get(), false, nullptr,
                     nullptr);
  kernels::gemm_bf16(true, true, 4, 0, 3, nullptr, nullptr, nullptr,
                     static_cast<__nv_bfloat16*>(nullptr), true, nullptr, nullptr);
  for (float v : c.download()) EXPECT_TRUE(std::isnan(v));
}

TEST(GemmBf16, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> buf(64);
  const auto* p = reinterpret_cast<const __nv_bfloat16*>(buf.get());
  float* c = buf.get();
  auto call = [&](int64_t m, int64_t n, int64_t k, const __nv_bfloat16* a, const __nv_bfloat16* b,
                  float* out, const float* bias = nullptr, void* workspace = nullptr) {
    kernels::gemm_bf16(false, false, m, n, k, a, b, bias, out, false, workspace, nullptr);
  };
  auto expect_error = [&](const char* needle, auto&& f) {
    testing::expect_invalid_argument("gemm_bf16", needle, f);
  };
  expect_error("m is -1", [&] { call(-1, 2, 2, p, p, c); });
  expect_error("k is 2147483648", [&] { call(1, 1, int64_t(1) << 31, p, p, c); });
  expect_error("A has 2^31", [&] { call(65536, 1, 32768, p, p, c); });
  expect_error("B has 2^31", [&] { call(1, 65536, 32768, p, p, c); });
  expect_error("C has 2^31", [&] { call(65536, 32768, 1, p, p, c); });
  expect_error("a is null", [&] { call(2, 2, 2, nullptr, p, c); });
  expect_error("b is null", [&] { call(2, 2, 2, p, nullptr, c); });
  expect_error("c is null", [&] { call(2, 2, 0, nullptr, nullptr, nullptr); });
  const auto* odd = reinterpret_cast<const __nv_bfloat16*>(reinterpret_cast<const char*>(p) + 1);
  expect_error("a is not 2-byte aligned", [&] { call(2, 2, 2, odd, p, c); });
  float* c2 = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + 2);
  expect_error("c is not 4-byte aligned", [&] { call(2, 2, 2, p, p, c2); });
  const auto* bias2 = reinterpret_cast<const float*>(reinterpret_cast<const char*>(c) + 2);
  expect_error("bias is not 4-byte aligned", [&] { call(2, 2, 2, p, p, c, bias2); });
  // 5 x 9 x 520 splits k (SplitKAutomatic): it needs the workspace.
  DeviceArray<uint16_t> big(size_t(520) * 9 + 8);
  const auto* q = reinterpret_cast<const __nv_bfloat16*>(big.get());
  expect_error("workspace is null", [&] { call(5, 9, 520, q, q, c); });
  expect_error("workspace is not 16-byte aligned", [&] {
    DeviceArray<float> ws(kernels::gemm_bf16_workspace_bytes(5, 9, 520) / 4 + 4);
    call(5, 9, 520, q, q, c, nullptr, ws.get() + 1);
  });
}

}  // namespace
}  // namespace ddpm::testing
