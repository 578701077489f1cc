// Tests of kernels/warp_mma.cuh: the fragment layout helpers, bf16 packing,
// and one warp's m16n8k16 through the default path (the PTX instruction on an
// sm_80+ GPU; the portable path under the emulator) and the portable path,
// run by tests/kernels/warp_mma_probe.cu.
//
// What can fail here:
//   - Layout: each helper must map a warp's fragment elements one-to-one onto
//     its matrix (checked on the host), and the mma must agree with that map.
//     Selection products (A = identity, B = halves of an identity, A = 0) are
//     exact in any summation order, so D must equal the selected operand
//     bitwise; one misplaced element shows at its own index.
//   - Arithmetic: D against a double-precision product of the bf16-rounded
//     operands, on operands whose elements are all distinct (a swapped pair
//     changes the sums) and on random normal operands (rounded by the probe).
//   - On a GPU: the PTX path against the portable path.
//
// Tolerance. A and B are bf16 (8 significant bits), so every product a_k b_k
// is exact in fp32 (16 bits); what is left is adding 16 products and c in
// fp32. Each term passes through at most 16 additions; with a relative error
// of at most 2u per addition (u = 2^-24: the portable path rounds to nearest,
// error u; tensor cores have been measured to truncate, error < 2u) the
// result is within 16 * 2u * (|c| + sum |a_k b_k|) of the exact value. A
// misplaced element changes a product by about |a b|, far above that.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernels/warp_mma.cuh"
#include "tests/kernels/conv2d_oracle.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/kernels/warp_mma_probe.h"

namespace ddpm {
namespace testing {
// gtest prints a failing case's path with this.
void PrintTo(MmaPath p, std::ostream* os) {
  *os << (p == MmaPath::portable ? "portable" : "default");
}
}  // namespace testing

namespace {

using kernels::mma::fragment_col;
using kernels::mma::fragment_row;
using kernels::mma::Operand;
using testing::MmaPath;
using testing::round_to_bf16;

constexpr int kM = 16, kN = 8, kK = 16;
constexpr double kU = 5.96e-8;                  // 2^-24
constexpr double kAccumulationBound = 32 * kU;  // 16 additions x 2u, see the top

struct Operands {
  std::vector<float> a = std::vector<float>(kM * kK, 0.f);  // [16][16]
  std::vector<float> b = std::vector<float>(kK * kN, 0.f);  // [16][8], rows are k
  std::vector<float> c = std::vector<float>(kM * kN, 0.f);  // [16][8]
};

std::vector<float> run(const Operands& in, MmaPath path) {
  std::vector<float> d(kM * kN, std::nanf(""));
  testing::run_warp_mma_probe(in.a.data(), in.b.data(), in.c.data(), d.data(), path);
  return d;
}

const char* path_name(MmaPath p) {
  return p == MmaPath::portable ? "portable" : "default";
}

// Exact product of the bf16-rounded A and B plus C, and the bound of the top.
struct Expected {
  std::vector<double> d, bound;
};
Expected exact_product(const Operands& in) {
  Expected e{std::vector<double>(kM * kN), std::vector<double>(kM * kN)};
  for (int i = 0; i < kM; ++i)
    for (int n = 0; n < kN; ++n) {
      double sum = in.c[i * kN + n], magnitude = std::abs(sum);
      for (int k = 0; k < kK; ++k) {
        const double p = double(round_to_bf16(in.a[i * kK + k])) * round_to_bf16(in.b[k * kN + n]);
        sum += p;
        magnitude += std::abs(p);
      }
      e.d[i * kN + n] = sum;
      e.bound[i * kN + n] = kAccumulationBound * magnitude;
    }
  return e;
}

void expect_within(const std::vector<float>& got, const Expected& want, const std::string& what) {
  for (int i = 0; i < kM * kN; ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": D(" << i / kN << ", " << i % kN << ")";
    EXPECT_NEAR(got[i], want.d[i], want.bound[i])
        << what << ": D(" << i / kN << ", " << i % kN << ")";
  }
}

// Distinct bf16-exact magnitudes: (1 + m/128) * 2^e for 128 m and a few e,
// in an order scrambled by an odd multiplier, with scattered signs.
float distinct_bf16(int index, int count, int salt) {
  const int j = (index * 97 + salt) % count;  // a permutation of 0..count-1 (97 is odd)
  const float magnitude = (1.f + float(j % 128) / 128.f) * std::ldexp(1.f, j / 128 - 1);
  return (index * 37 + salt) % 3 == 0 ? -magnitude : magnitude;
}

Operands distinct_operands() {
  Operands in;
  for (int i = 0; i < kM * kK; ++i) in.a[i] = distinct_bf16(i, kM * kK, 31);
  for (int i = 0; i < kK * kN; ++i) in.b[i] = distinct_bf16(i, kK * kN, 7);
  for (int i = 0; i < kM * kN; ++i) in.c[i] = float(i + 1) / 64.f * (i % 2 ? 1.f : -1.f);
  return in;
}

// ------------------------------------------------------------ host: helpers

TEST(WarpMmaLayout, EachOperandMapsLanesOntoItsMatrixOneToOne) {
  struct Case {
    Operand op;
    int rows, cols, per_lane;
  };
  for (const Case& k :
       {Case{Operand::a, kM, kK, 8}, Case{Operand::b, kK, kN, 4}, Case{Operand::c, kM, kN, 4}}) {
    std::set<std::pair<int, int>> seen;
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < k.per_lane; ++i) {
        const int r = fragment_row(k.op, lane, i), c = fragment_col(k.op, lane, i);
        ASSERT_TRUE(r >= 0 && r < k.rows && c >= 0 && c < k.cols) << "lane " << lane << " i " << i;
        seen.insert({r, c});
      }
    EXPECT_EQ(seen.size(), size_t(k.rows * k.cols)) << "operand " << int(k.op);
  }
}

// The PTX ISA's figures for m16n8k16 (bf16), written out register by register.
TEST(WarpMmaLayout, MatchesThePtxIsaTables) {
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    // A: register 0 (g, 2t..2t+1), 1 (g+8, 2t..), 2 (g, 2t+8..), 3 (g+8, 2t+8..).
    const int a_rows[4] = {g, g + 8, g, g + 8}, a_cols[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
    for (int reg = 0; reg < 4; ++reg)
      for (int half = 0; half < 2; ++half) {
        EXPECT_EQ(fragment_row(Operand::a, lane, 2 * reg + half), a_rows[reg]);
        EXPECT_EQ(fragment_col(Operand::a, lane, 2 * reg + half), a_cols[reg] + half);
      }
    // B: register 0 k = 2t..2t+1, register 1 k = 2t+8..; column g.
    for (int reg = 0; reg < 2; ++reg)
      for (int half = 0; half < 2; ++half) {
        EXPECT_EQ(fragment_row(Operand::b, lane, 2 * reg + half), 2 * t + 8 * reg + half);
        EXPECT_EQ(fragment_col(Operand::b, lane, 2 * reg + half), g);
      }
    // C/D: c0, c1 at (g, 2t..2t+1); c2, c3 at (g+8, 2t..2t+1).
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(fragment_row(Operand::c, lane, i), g + (i / 2) * 8);
      EXPECT_EQ(fragment_col(Operand::c, lane, i), 2 * t + i % 2);
    }
  }
}

TEST(WarpMmaPack, RoundsToNearestEvenLowElementInLowHalf) {
  const float values[] = {1.f,
                          -2.5f,
                          1.00390625f /* tie, to even: 1 */,
                          1.01171875f /* tie, to even: 1.015625 */,
                          1.0039063f /* just above the tie: up */,
                          3.14159265f,
                          -1e-30f,
                          65504.f,
                          1e38f};
  for (float lo : values)
    for (float hi : values) {
      const uint32_t packed = kernels::mma::pack_bf16x2(lo, hi);
      uint32_t want_lo, want_hi;
      const float rlo = round_to_bf16(lo), rhi = round_to_bf16(hi);
      std::memcpy(&want_lo, &rlo, 4);
      std::memcpy(&want_hi, &rhi, 4);
      EXPECT_EQ(packed & 0xFFFFu, want_lo >> 16) << lo;
      EXPECT_EQ(packed >> 16, want_hi >> 16) << hi;
    }
}

// ------------------------------------------------------------ device: both paths

class WarpMma : public ::testing::TestWithParam<MmaPath> {};

TEST_P(WarpMma, IdentityTimesBIsB) {
  DDPM_REQUIRE_DEVICE();
  Operands in = distinct_operands();
  std::fill(in.a.begin(), in.a.end(), 0.f);
  std::fill(in.c.begin(), in.c.end(), 0.f);
  for (int i = 0; i < kM; ++i) in.a[i * kK + i] = 1.f;
  const std::vector<float> d = run(in, GetParam());
  for (int i = 0; i < kM * kN; ++i)
    ASSERT_EQ(d[i], in.b[i]) << path_name(GetParam()) << ": D(" << i / kN << ", " << i % kN
                             << ") should be B(" << i / kN << ", " << i % kN << ")";
}

TEST_P(WarpMma, AColumnsSelectedByIdentityHalves) {
  DDPM_REQUIRE_DEVICE();
  for (int half = 0; half < 2; ++half) {
    Operands in = distinct_operands();
    std::fill(in.b.begin(), in.b.end(), 0.f);
    std::fill(in.c.begin(), in.c.end(), 0.f);
    for (int n = 0; n < kN; ++n) in.b[(8 * half + n) * kN + n] = 1.f;  // D = A[:, 8 half + n]
    const std::vector<float> d = run(in, GetParam());
    for (int i = 0; i < kM; ++i)
      for (int n = 0; n < kN; ++n)
        ASSERT_EQ(d[i * kN + n], in.a[i * kK + 8 * half + n])
            << path_name(GetParam()) << ": D(" << i << ", " << n << ") should be A(" << i << ", "
            << 8 * half + n << ")";
  }
}

TEST_P(WarpMma, ZeroAPassesCThrough) {
  DDPM_REQUIRE_DEVICE();
  Operands in = distinct_operands();
  std::fill(in.a.begin(), in.a.end(), 0.f);
  const std::vector<float> d = run(in, GetParam());
  for (int i = 0; i < kM * kN; ++i) ASSERT_EQ(d[i], in.c[i]) << path_name(GetParam()) << " " << i;
}

TEST_P(WarpMma, DistinctOperandsMatchDoubleProduct) {
  DDPM_REQUIRE_DEVICE();
  const Operands in = distinct_operands();
  expect_within(run(in, GetParam()), exact_product(in), path_name(GetParam()));
}

TEST_P(WarpMma, RandomOperandsRoundedToBf16MatchDoubleProduct) {
  DDPM_REQUIRE_DEVICE();
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    Operands in;
    in.a = testing::random_floats(in.a.size(), seed);  // not bf16: the probe rounds them
    in.b = testing::random_floats(in.b.size(), seed + 100, 3.0);
    in.c = testing::random_floats(in.c.size(), seed + 200, 10.0);
    expect_within(run(in, GetParam()), exact_product(in),
                  std::string(path_name(GetParam())) + " seed " + std::to_string(seed));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, WarpMma,
                         ::testing::Values(MmaPath::default_path, MmaPath::portable),
                         [](const auto& info) { return std::string(path_name(info.param)); });

TEST(WarpMmaPaths, DefaultPathIsPtxOnTheGpuOnly) {
  DDPM_REQUIRE_DEVICE();
#if DDPM_KERNEL_TESTS_EMULATED
  EXPECT_FALSE(testing::warp_mma_default_is_ptx());
#else
  EXPECT_TRUE(testing::warp_mma_default_is_ptx()) << "built for sm_80+: mma.sync expected";
#endif
}

// The two paths each lie within the bound of the exact product, so within
// twice the bound of each other; under the emulator they are the same code.
TEST(WarpMmaPaths, PtxAgreesWithPortable) {
  DDPM_REQUIRE_DEVICE();
  for (uint64_t seed = 11; seed <= 13; ++seed) {
    Operands in;
    in.a = testing::random_floats(in.a.size(), seed);
    in.b = testing::random_floats(in.b.size(), seed + 100);
    in.c = testing::random_floats(in.c.size(), seed + 200);
    const std::vector<float> fast = run(in, MmaPath::default_path);
    const std::vector<float> portable = run(in, MmaPath::portable);
    const Expected e = exact_product(in);
    for (int i = 0; i < kM * kN; ++i) {
#if DDPM_KERNEL_TESTS_EMULATED
      EXPECT_EQ(fast[i], portable[i]) << i;
#else
      EXPECT_NEAR(fast[i], portable[i], 2 * e.bound[i]) << "seed " << seed << " element " << i;
#endif
    }
  }
}

}  // namespace
}  // namespace ddpm
