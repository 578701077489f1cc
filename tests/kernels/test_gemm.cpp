// Kernel tests of gemm.cuh (see kernel_test_util.h): our SIMT GEMM, each of
// its block tiles, every transpose combination, bias and accumulate, against
// a double-precision loop; the public API's names, errors and edge cases; on a
// GPU, cuBLAS through the same cases and ours against cuBLAS at the UNet's
// linear-layer sizes.
//
// Oracle: want[i][j] = (accumulate ? C0[i][j] : 0) + sum_p opA(i,p) opB(p,j)
// + bias[j] in double, and mag[i][j] the same sum over absolute values.
//
// Tolerance. Each product passes through at most k + 2 fp32 roundings: its
// own (or its FMA's), at most k - 1 additions whatever their order or tree
// (one FMA chain, k-groups added at the end, cuBLAS's split-K), and the
// additions of the bias and the prior C. So |got - want| <= gamma_{k+2} mag
// <= (k + 3) u mag with u = 2^-24 (for (k + 2) u << 1). One wrong or missing
// term, of size ~ mag / k, exceeds it whenever k^2 u << 1: k <= 333 in the
// element-exact cases. The UNet-size comparisons (k up to 32768) catch wrong
// tiles, rows, columns and tails, not single terms. Where mag is too costly
// to form there (ours vs cuBLAS on all of 32768 x 256 x 256) it is bounded by
// Cauchy-Schwarz: sum_p |a_p b_p| <= |a_i| |b_j| (row and column norms),
// about 1.6x mag for Gaussian data; two results each within the bound of the
// exact one are within twice it of each other.
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

#include "kernels/gemm.cuh"
#include "kernels/gemm_internal.cuh"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

using kernels::GemmImpl;
using kernels::detail::GemmTile;

constexpr double kU = 0x1p-24;  // fp32 unit roundoff

struct Dims {
  int64_t m, n, k;
};

// One call: dimensions, transposes, bias and accumulate.
struct GemmCase {
  Dims d;
  bool trans_a = false, trans_b = false, bias = false, accumulate = false;
  size_t offset = 0;  // floats: every operand starts this far into its allocation
};

std::string describe(const GemmCase& c) {
  return std::to_string(c.d.m) + "x" + std::to_string(c.d.n) + "x" + std::to_string(c.d.k) +
         (c.trans_a ? " A^T" : " A") + (c.trans_b ? " B^T" : " B") + (c.bias ? " bias" : "") +
         (c.accumulate ? " accumulate" : "") + (c.offset ? " unaligned" : "");
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// ------------------------------------------------------------- device memory

using Slice = GuardedSlice<float>;

// ------------------------------------------------------------- inputs, oracle

struct Operands {
  std::vector<float> a, b, bias, c0;  // a: m*k, b: k*n (stored as the transposes say)
};

Operands make_operands(const GemmCase& c, uint64_t seed) {
  Operands o;
  o.a = random_floats(size_t(c.d.m * c.d.k), seed);
  o.b = random_floats(size_t(c.d.k * c.d.n), seed + 1);
  if (c.bias) o.bias = random_floats(size_t(c.d.n), seed + 2);
  if (c.accumulate) o.c0 = random_floats(size_t(c.d.m * c.d.n), seed + 3);
  return o;
}

float op_a(const GemmCase& c, const Operands& o, int64_t i, int64_t p) {
  return c.trans_a ? o.a[size_t(p * c.d.m + i)] : o.a[size_t(i * c.d.k + p)];
}
float op_b(const GemmCase& c, const Operands& o, int64_t p, int64_t j) {
  return c.trans_b ? o.b[size_t(j * c.d.k + p)] : o.b[size_t(p * c.d.n + j)];
}

struct Reference {
  std::vector<double> want, tol;  // rows `rows` of C only, row-major
  std::vector<int64_t> rows;
};

// The double loop over the given rows of C (all when empty), with the
// element-wise bound (k + 3) u mag of the header comment.
Reference reference(const GemmCase& c, const Operands& o, std::vector<int64_t> rows = {}) {
  if (rows.empty())
    for (int64_t i = 0; i < c.d.m; ++i) rows.push_back(i);
  Reference r;
  r.rows = rows;
  const int64_t n = c.d.n, k = c.d.k;
  r.want.resize(rows.size() * size_t(n));
  r.tol.resize(r.want.size());
  std::vector<double> arow(static_cast<size_t>(k));
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const int64_t i = rows[ri];
    for (int64_t p = 0; p < k; ++p) arow[size_t(p)] = op_a(c, o, i, p);
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0, mag = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double t = arow[size_t(p)] * double(op_b(c, o, p, j));
        sum += t;
        mag += std::abs(t);
      }
      if (c.bias) sum += o.bias[size_t(j)], mag += std::abs(o.bias[size_t(j)]);
      if (c.accumulate) {
        const double prior = o.c0[size_t(i * n + j)];
        sum += prior, mag += std::abs(prior);
      }
      r.want[ri * size_t(n) + size_t(j)] = sum;
      r.tol[ri * size_t(n) + size_t(j)] = double(k + 3) * kU * mag;
    }
  }
  return r;
}

// |got - want| <= tol on the reference's rows, every element finite (a NaN
// left from the poison means an output was never written).
void expect_matches(const std::vector<float>& got, const Reference& ref, int64_t n,
                    const std::string& what) {
  double worst = 0;
  for (size_t ri = 0; ri < ref.rows.size(); ++ri)
    for (int64_t j = 0; j < n; ++j) {
      const size_t g = size_t(ref.rows[ri] * n + j), w = ri * size_t(n) + size_t(j);
      ASSERT_TRUE(std::isfinite(got[g]))
          << what << ": C[" << ref.rows[ri] << "][" << j << "] not written (or not finite)";
      ASSERT_NEAR(got[g], ref.want[w], ref.tol[w])
          << what << ": C[" << ref.rows[ri] << "][" << j << "]";
      if (ref.tol[w] > 0) worst = std::max(worst, std::abs(got[g] - ref.want[w]) / ref.tol[w]);
    }
  ::testing::Test::RecordProperty("worst_error_over_tolerance", sci(worst));
}

// ------------------------------------------------------------- running

// How a case is run: our kernel with a given tile, or an implementation
// through the public entry point.
struct Runner {
  bool public_api = true;
  GemmImpl impl = GemmImpl::simt;
  GemmTile tile = GemmTile::automatic;
};

std::vector<float> run(const GemmCase& c, const Operands& o, const Runner& how) {
  Slice a(o.a, c.offset), b(o.b, c.offset), bias(o.bias, c.offset);
  Slice out(size_t(c.d.m * c.d.n), c.offset);
  if (c.accumulate) out.upload(o.c0);
  const float* bias_ptr = c.bias ? bias.get() : nullptr;
  if (how.public_api)
    kernels::gemm(c.trans_a, c.trans_b, c.d.m, c.d.n, c.d.k, a.get(), b.get(), bias_ptr, out.get(),
                  c.accumulate, how.impl, nullptr);
  else
    kernels::detail::gemm_simt(c.trans_a, c.trans_b, c.d.m, c.d.n, c.d.k, a.get(), b.get(),
                               bias_ptr, out.get(), c.accumulate, how.tile, nullptr);
  return out.download();
}

void check_case(const GemmCase& c, const Runner& how, uint64_t seed) {
  SCOPED_TRACE(describe(c));
  const Operands o = make_operands(c, seed);
  const std::vector<float> got = run(c, o, how);
  expect_matches(got, reference(c, o), c.d.n, describe(c));
}

// The four transposes, each with bias + overwrite, accumulate alone, and both.
void check_all_modes(Dims d, const Runner& how, size_t offset = 0) {
  uint64_t seed = 100;
  for (int t = 0; t < 4; ++t)
    for (int mode = 0; mode < 3; ++mode) {
      GemmCase c{d, (t & 1) != 0, (t & 2) != 0, mode != 1, mode != 0, offset};
      check_case(c, how, seed += 10);
      if (::testing::Test::HasFatalFailure()) return;
    }
}

// ------------------------------------------------------------- emulated and GPU

// Odd sizes (1, 3, 5, 40, 67), tails in every dimension, k spanning several
// stages of each tile (BK 8, 16, 32), and sizes divisible by 4 (the float4
// staging path; the others take the scalar one). 130 x 129 spans two 128-row
// tiles with a tail of 2 (1) rows (columns).
const Dims kDims[] = {
    {1, 1, 1},   {3, 5, 1},    {5, 3, 7},    {1, 67, 40}, {67, 1, 5},   {3, 40, 67},
    {40, 67, 3}, {40, 40, 40}, {67, 67, 67}, {4, 8, 12},  {64, 68, 36}, {130, 129, 67},
};

const GemmTile kTiles[] = {GemmTile::tile128x128, GemmTile::tile64x64_split4,
                           GemmTile::tile32x32_split4};

struct TileCase {
  Dims d;
  GemmTile tile;
};

std::string tile_case_name(const TileCase& t) {
  return std::to_string(t.d.m) + "x" + std::to_string(t.d.n) + "x" + std::to_string(t.d.k) +
         "_tile" + kernels::detail::gemm_tile_name(t.tile);
}

// gtest prints a failing case's parameter with this.
void PrintTo(const TileCase& t, std::ostream* os) {
  *os << tile_case_name(t);
}

std::vector<TileCase> tile_cases() {
  std::vector<TileCase> v;
  for (GemmTile t : kTiles)
    for (const Dims& d : kDims) v.push_back({d, t});
  return v;
}

class GemmTileCase : public ::testing::TestWithParam<TileCase> {};

// Every tile of our kernel, every transpose and mode, against the double loop.
TEST_P(GemmTileCase, MatchesDoubleLoop) {
  DDPM_REQUIRE_DEVICE();
  check_all_modes(GetParam().d, Runner{false, GemmImpl::simt, GetParam().tile});
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmTileCase, ::testing::ValuesIn(tile_cases()),
                         [](const ::testing::TestParamInfo<TileCase>& i) {
                           std::string s = tile_case_name(i.param);
                           std::replace(s.begin(), s.end(), '_', 'x');
                           return s;
                         });

// Operands one float past 16-byte alignment: the scalar staging and stores
// for sizes that would otherwise take float4s.
TEST(GemmKernel, UnalignedOperands) {
  DDPM_REQUIRE_DEVICE();
  for (GemmTile t : kTiles) {
    SCOPED_TRACE(kernels::detail::gemm_tile_name(t));
    check_all_modes({64, 68, 36}, Runner{false, GemmImpl::simt, t}, 1);
  }
}

// Through gemm(): the tile it chooses, and its validation on the way.
TEST(GemmKernel, PublicEntryPoint) {
  DDPM_REQUIRE_DEVICE();
  check_all_modes({67, 40, 5}, Runner{});
  check_all_modes({40, 64, 128}, Runner{});
}

// k = 0: C = bias (or 0), or C += bias with accumulate; a and b may be null.
TEST(GemmKernel, EmptyProduct) {
  DDPM_REQUIRE_DEVICE();
  for (bool bias : {false, true})
    for (bool accumulate : {false, true}) {
      GemmCase c{{5, 7, 0}, false, true, bias, accumulate};
      SCOPED_TRACE(describe(c));
      const Operands o = make_operands(c, 7);
      Slice bias_d(o.bias, 0), out(35, 0);
      if (accumulate) out.upload(o.c0);
      kernels::gemm(false, true, 5, 7, 0, nullptr, nullptr, bias ? bias_d.get() : nullptr,
                    out.get(), accumulate, GemmImpl::simt, nullptr);
      expect_matches(out.download(), reference(c, o), 7, describe(c));
    }
}

// m or n = 0: nothing is written (C keeps its poison, no pointer is read).
TEST(GemmKernel, EmptyOutputIsNoOp) {
  DDPM_REQUIRE_DEVICE();
  Slice c(4, 0);
  kernels::gemm(false, false, 0, 4, 3, nullptr, nullptr, nullptr, c.get(), false, GemmImpl::simt,
                nullptr);
  kernels::gemm(true, true, 4, 0, 3, nullptr, nullptr, nullptr, nullptr, true, GemmImpl::simt,
                nullptr);
  for (float v : c.download()) EXPECT_TRUE(std::isnan(v));
}

// A fixed summation order: two runs give bitwise the same C, for each tile.
TEST(GemmKernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  const GemmCase c{{67, 40, 130}, true, false, true, false};
  const Operands o = make_operands(c, 5);
  for (GemmTile t : kTiles) {
    const std::vector<float> first = run(c, o, Runner{false, GemmImpl::simt, t});
    const std::vector<float> second = run(c, o, Runner{false, GemmImpl::simt, t});
    EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0)
        << kernels::detail::gemm_tile_name(t);
  }
}

// The tile follows the output's size: 128x128 where that gives a wave of
// blocks, then the k-group tiles.
TEST(GemmKernel, TileChoice) {
  using kernels::detail::choose_gemm_tile;
  EXPECT_EQ(choose_gemm_tile(32768, 256), GemmTile::tile128x128);      // q/k/v, batch 128
  EXPECT_EQ(choose_gemm_tile(4096, 256), GemmTile::tile64x64_split4);  // batch 16
  EXPECT_EQ(choose_gemm_tile(256, 256), GemmTile::tile32x32_split4);   // dW of a projection
  EXPECT_EQ(choose_gemm_tile(128, 512), GemmTile::tile32x32_split4);   // time-embedding MLP
  EXPECT_EQ(choose_gemm_tile(1, 1), GemmTile::tile32x32_split4);
}

TEST(GemmApi, NamesRoundTrip) {
  for (GemmImpl impl : {GemmImpl::simt, GemmImpl::cublas})
    EXPECT_EQ(kernels::parse_gemm_impl(kernels::gemm_impl_name(impl)), impl);
  EXPECT_STREQ(kernels::gemm_impl_name(GemmImpl::cublas), "cublas");
  try {
    kernels::parse_gemm_impl("cutlass");
    ADD_FAILURE() << "parse_gemm_impl accepted 'cutlass'";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("'cutlass'"), std::string::npos) << what;
    EXPECT_NE(what.find("simt or cublas"), std::string::npos) << what;
  }
}

TEST(GemmApi, Availability) {
  std::string reason = "unchanged";
  EXPECT_TRUE(kernels::gemm_impl_available(GemmImpl::simt, &reason));
#if DDPM_KERNEL_TESTS_EMULATED
  EXPECT_FALSE(kernels::gemm_impl_available(GemmImpl::cublas, &reason));
  EXPECT_NE(reason.find("no cuBLAS"), std::string::npos) << reason;
  DeviceArray<float> buf(16);
  try {
    kernels::gemm(false, false, 2, 2, 2, buf.get(), buf.get(), nullptr, buf.get(), false,
                  GemmImpl::cublas, nullptr);
    ADD_FAILURE() << "gemm ran cublas in an emulated build";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cublas"), std::string::npos) << e.what();
  }
#else
  if (!kernels::gemm_impl_available(GemmImpl::cublas, &reason)) {
    EXPECT_FALSE(reason.empty()) << "cublas unavailable without a reason";
    RecordProperty("cublas_unavailable", reason);
  }
#endif
}

TEST(GemmApi, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> buf(64);
  float* p = buf.get();
  auto call = [&](int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c,
                  const float* bias = nullptr) {
    kernels::gemm(false, false, m, n, k, a, b, bias, c, false, GemmImpl::simt, nullptr);
  };
  auto expect_error = [&](const char* needle, auto&& f) {
    testing::expect_invalid_argument("gemm", needle, f);
  };
  expect_error("m is -1", [&] { call(-1, 2, 2, p, p, p); });
  expect_error("k is 2147483648", [&] { call(1, 1, int64_t(1) << 31, p, p, p); });
  expect_error("A has 2^31", [&] { call(65536, 1, 32768, p, p, p); });
  expect_error("B has 2^31", [&] { call(1, 65536, 32768, p, p, p); });
  expect_error("C has 2^31", [&] { call(65536, 32768, 1, p, p, p); });
  expect_error("a is null", [&] { call(2, 2, 2, nullptr, p, p); });
  expect_error("b is null", [&] { call(2, 2, 2, p, nullptr, p); });
  expect_error("c is null", [&] { call(2, 2, 0, nullptr, nullptr, nullptr); });
  const float* odd = reinterpret_cast<const float*>(reinterpret_cast<const char*>(p) + 2);
  expect_error("bias is not 4-byte aligned", [&] { call(2, 2, 2, p, p, p, odd); });
}

// ------------------------------------------------------------- GPU only
#if !DDPM_KERNEL_TESTS_EMULATED

#define DDPM_REQUIRE_CUBLAS()                                  \
  do {                                                         \
    DDPM_REQUIRE_DEVICE();                                     \
    std::string why;                                           \
    if (!kernels::gemm_impl_available(GemmImpl::cublas, &why)) \
      GTEST_SKIP() << "cuBLAS unavailable: " << why;           \
  } while (0)

// cuBLAS through the public entry point: the same cases as our tiles.
TEST(GemmCublas, MatchesDoubleLoop) {
  DDPM_REQUIRE_CUBLAS();
  for (const Dims& d : kDims) {
    check_all_modes(d, Runner{true, GemmImpl::cublas});
    if (HasFatalFailure()) return;
  }
  check_all_modes({64, 68, 36}, Runner{true, GemmImpl::cublas}, 1);
}

// Larger odd shapes with every tile: many blocks, several waves.
TEST(GemmKernel, LargerOddShapes) {
  DDPM_REQUIRE_DEVICE();
  for (GemmTile t : kTiles) {
    SCOPED_TRACE(kernels::detail::gemm_tile_name(t));
    check_all_modes({515, 257, 333}, Runner{false, GemmImpl::simt, t});
    if (HasFatalFailure()) return;
  }
}

// The UNet's linear layers: ours and cuBLAS each against the double loop on
// sampled rows, and against each other everywhere (Cauchy-Schwarz bound).
void compare_with_cublas(const GemmCase& c) {
  SCOPED_TRACE(describe(c));
  const Operands o = make_operands(c, 41);
  const std::vector<float> ours = run(c, o, Runner{true, GemmImpl::simt});
  const std::vector<float> theirs = run(c, o, Runner{true, GemmImpl::cublas});
  std::vector<int64_t> rows;
  const int64_t step = std::max<int64_t>(1, c.d.m / 24);
  for (int64_t i = 0; i < c.d.m; i += step) rows.push_back(i);
  rows.push_back(c.d.m - 1);
  const Reference ref = reference(c, o, rows);
  expect_matches(ours, ref, c.d.n, "simt " + describe(c));
  expect_matches(theirs, ref, c.d.n, "cublas " + describe(c));

  const int64_t m = c.d.m, n = c.d.n, k = c.d.k;
  std::vector<double> row_norm(static_cast<size_t>(m)), col_norm(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    double s = 0;
    for (int64_t p = 0; p < k; ++p) s += double(op_a(c, o, i, p)) * op_a(c, o, i, p);
    row_norm[size_t(i)] = std::sqrt(s);
  }
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t p = 0; p < k; ++p) s += double(op_b(c, o, p, j)) * op_b(c, o, p, j);
    col_norm[size_t(j)] = std::sqrt(s);
  }
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const size_t e = size_t(i * n + j);
      double mag = row_norm[size_t(i)] * col_norm[size_t(j)];
      if (c.bias) mag += std::abs(o.bias[size_t(j)]);
      if (c.accumulate) mag += std::abs(o.c0[e]);
      const double tol = 2 * double(k + 3) * kU * mag;
      ASSERT_TRUE(std::isfinite(ours[e])) << "simt C[" << i << "][" << j << "]";
      ASSERT_NEAR(ours[e], theirs[e], tol) << "simt vs cublas, C[" << i << "][" << j << "]";
      worst = std::max(worst, std::abs(double(ours[e]) - theirs[e]) / tol);
    }
  ::testing::Test::RecordProperty("simt_vs_cublas_worst_over_tolerance", sci(worst));
}

TEST(GemmCublas, UnetLinearLayers) {
  DDPM_REQUIRE_CUBLAS();
  // Attention q/k/v/out projections over 128 x 256 tokens of 256 channels:
  // forward y = x W^T + b, dx = dy W, dW += dy^T x.
  compare_with_cublas({{128 * 256, 256, 256}, false, true, true, false});
  compare_with_cublas({{128 * 256, 256, 256}, false, false, false, false});
  compare_with_cublas({{256, 256, 128 * 256}, true, false, false, true});
  // Time-embedding MLP at batch 128: 128 -> 512, 512 -> 512 and their backward.
  compare_with_cublas({{128, 512, 128}, false, true, true, false});
  compare_with_cublas({{128, 512, 512}, false, true, true, false});
  compare_with_cublas({{128, 128, 512}, false, false, false, true});
  compare_with_cublas({{512, 128, 128}, true, false, false, true});
}

#endif  // !DDPM_KERNEL_TESTS_EMULATED

}  // namespace
}  // namespace ddpm::testing
