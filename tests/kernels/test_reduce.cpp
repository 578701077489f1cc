// Kernel tests of reduce.cuh (column_sum_add, split_sum_add) against sums in
// double, and of their determinism.
//
// Two kinds of data:
//   - small integers (-8..8): every partial sum is an integer below 2^24, so
//     any order of fp32 additions is exact and the result must equal the
//     exact sum bit for bit: a row or split skipped, added twice or taken
//     from the wrong place changes it by at least 1.
//   - N(0, 1) draws: the bound of a sum whose terms each pass through at most
//     `chain` fp32 additions, |got - exact| <= chain u sum|terms| (u = 2^-24).
//     column_sum_add's chain: a thread's rows (every 8th of a chunk of at most
//     ceil(rows / chunks) rows), the 8 row lanes, the chunks, the prior of out.
//     split_sum_add is specified to add the splits in order: it must equal
//     that fp32 sum computed here bit for bit.
// Shapes: one chunk (rows <= 1024) and several (1025, 3000), the chunk cap of
// 128 (131073 rows), column counts below, at and off a multiple of the 32
// column lanes (1, 5, 32, 33, 70), and empty inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/reduce.cuh"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

constexpr double kU = 0x1p-24;

// The chunking of reduce.cu, for the error chain only (the exact tests do not
// depend on it).
int64_t column_sum_chain(int64_t rows) {
  const int64_t chunks = std::clamp<int64_t>((rows + 1023) / 1024, 1, 128);
  const int64_t rows_per_chunk = (rows + chunks - 1) / chunks;
  return (rows_per_chunk + 7) / 8 + 8 + chunks + 1;
}

std::vector<float> small_integers(size_t n, uint64_t seed) {
  std::vector<float> v = random_floats(n, seed, 4.0);
  for (float& x : v) x = std::clamp(std::round(x), -8.0f, 8.0f);
  return v;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Runs column_sum_add on m [rows, cols] into out prefilled with `prior`, with
// its own poisoned workspace.
std::vector<float> column_sum(const std::vector<float>& m, const std::vector<float>& prior,
                              int64_t rows, int64_t cols) {
  DeviceArray<float> dm(m), out(prior);
  const size_t ws = k::column_sum_workspace_bytes(rows, cols);
  DeviceArray<char> workspace(ws);
  k::column_sum_add(dm.get(), out.get(), rows, cols, ws ? workspace.get() : nullptr, nullptr);
  check_cuda(cudaGetLastError(), "column_sum_add");
  return out.download();
}

struct ColumnCase {
  int64_t rows, cols;
};

void PrintTo(const ColumnCase& c, std::ostream* os) {
  *os << c.rows << " x " << c.cols;
}

class ColumnSum : public ::testing::TestWithParam<ColumnCase> {};

TEST_P(ColumnSum, ExactOnIntegers) {
  DDPM_REQUIRE_DEVICE();
  const auto [rows, cols] = GetParam();
  const std::vector<float> m = small_integers(size_t(rows * cols), uint64_t(rows * 7 + cols));
  const std::vector<float> prior = small_integers(size_t(cols), 99);
  std::vector<float> want(prior);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want[size_t(c)] += m[size_t(r * cols + c)];
  const std::vector<float> got = column_sum(m, prior, rows, cols);
  for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(got[size_t(c)], want[size_t(c)]) << "column " << c;
}

TEST_P(ColumnSum, WithinTheChainBoundAndReproducible) {
  DDPM_REQUIRE_DEVICE();
  const auto [rows, cols] = GetParam();
  const std::vector<float> m = random_floats(size_t(rows * cols), uint64_t(rows + 3 * cols));
  const std::vector<float> prior = random_floats(size_t(cols), 5);
  std::vector<double> want(prior.begin(), prior.end()), magnitude(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) magnitude[size_t(c)] = std::abs(double(prior[size_t(c)]));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      want[size_t(c)] += m[size_t(r * cols + c)];
      magnitude[size_t(c)] += std::abs(double(m[size_t(r * cols + c)]));
    }
  const std::vector<float> got = column_sum(m, prior, rows, cols);
  const double chain = double(column_sum_chain(rows));
  for (int64_t c = 0; c < cols; ++c) {
    ASSERT_TRUE(std::isfinite(got[size_t(c)])) << "column " << c;
    ASSERT_NEAR(got[size_t(c)], want[size_t(c)], chain * kU * magnitude[size_t(c)])
        << "column " << c;
  }
  EXPECT_TRUE(bitwise_equal(got, column_sum(m, prior, rows, cols))) << "two runs differ";
}

const ColumnCase kColumnCases[] = {{1, 1},     {7, 5},    {1024, 33}, {1025, 5},
                                   {3000, 70}, {513, 32}, {131073, 3}};

INSTANTIATE_TEST_SUITE_P(Shapes, ColumnSum, ::testing::ValuesIn(kColumnCases),
                         [](const ::testing::TestParamInfo<ColumnCase>& info) {
                           return "rows" + std::to_string(info.param.rows) + "_cols" +
                                  std::to_string(info.param.cols);
                         });

TEST(ColumnSumWorkspace, NoneForOneChunkEnoughForSeveral) {
  EXPECT_EQ(k::column_sum_workspace_bytes(1024, 100), 0u);
  EXPECT_GE(k::column_sum_workspace_bytes(1025, 100), 2 * 100 * sizeof(float));
  EXPECT_GE(k::column_sum_workspace_bytes(int64_t(1) << 20, 7), 128 * 7 * sizeof(float));
  EXPECT_EQ(k::column_sum_workspace_bytes(3000, 70) % 256, 0u);
}

TEST(ColumnSum, EmptyInputsLeaveOutAlone) {
  DDPM_REQUIRE_DEVICE();
  const std::vector<float> prior = {1.5f, -2.f, 3.f};
  DeviceArray<float> out(prior);
  k::column_sum_add(nullptr, out.get(), 0, 3, nullptr, nullptr);
  k::column_sum_add(nullptr, out.get(), 5, 0, nullptr, nullptr);
  check_cuda(cudaGetLastError(), "column_sum_add");
  EXPECT_TRUE(bitwise_equal(out.download(), prior));
}

// ---- split_sum_add --------------------------------------------------------------

struct SplitCase {
  int splits;
  int64_t count;
};

void PrintTo(const SplitCase& c, std::ostream* os) {
  *os << c.splits << " splits of " << c.count;
}

class SplitSum : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitSum, AddsTheSplitsInOrder) {
  DDPM_REQUIRE_DEVICE();
  const auto [splits, count] = GetParam();
  const std::vector<float> partials =
      random_floats(size_t(splits) * size_t(count), uint64_t(splits * 1000 + count));
  const std::vector<float> prior = random_floats(size_t(count), 17);
  std::vector<float> want(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    float total = partials[size_t(i)];
    for (int s = 1; s < splits; ++s) total += partials[size_t(s * count + i)];
    want[size_t(i)] = prior[size_t(i)] + total;
  }
  DeviceArray<float> dp(partials), out(prior);
  k::split_sum_add(dp.get(), splits, count, out.get(), nullptr);
  check_cuda(cudaGetLastError(), "split_sum_add");
  const std::vector<float> got = out.download();
  for (int64_t i = 0; i < count; ++i) {
    double exact = prior[size_t(i)], magnitude = std::abs(exact);
    for (int s = 0; s < splits; ++s) {
      exact += partials[size_t(s * count + i)];
      magnitude += std::abs(double(partials[size_t(s * count + i)]));
    }
    ASSERT_NEAR(got[size_t(i)], exact, double(splits + 1) * kU * magnitude) << "element " << i;
    ASSERT_EQ(got[size_t(i)], want[size_t(i)]) << "element " << i << ": not the in-order sum";
  }
}

// count 270337: more than the grid's 1056 x 256 threads, so threads loop.
const SplitCase kSplitCases[] = {{1, 1}, {1, 1000}, {2, 5}, {3, 257}, {7, 4099}, {2, 270337}};

INSTANTIATE_TEST_SUITE_P(Shapes, SplitSum, ::testing::ValuesIn(kSplitCases),
                         [](const ::testing::TestParamInfo<SplitCase>& info) {
                           return "splits" + std::to_string(info.param.splits) + "_count" +
                                  std::to_string(info.param.count);
                         });

TEST(SplitSum, EmptyInputsLeaveOutAlone) {
  DDPM_REQUIRE_DEVICE();
  const std::vector<float> prior = {4.f, 5.f};
  DeviceArray<float> out(prior);
  k::split_sum_add(nullptr, 3, 0, out.get(), nullptr);
  k::split_sum_add(nullptr, 0, 2, out.get(), nullptr);
  check_cuda(cudaGetLastError(), "split_sum_add");
  EXPECT_TRUE(bitwise_equal(out.download(), prior));
}

}  // namespace
}  // namespace ddpm::testing
