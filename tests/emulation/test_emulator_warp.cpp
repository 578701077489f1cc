// Warp operations under the emulator: shuffle reductions against a plain sum,
// a shuffle-up scan on a partial last warp, votes, 16/64-bit shuffles, match
// and reduce.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

void expect_block_sums_match(bool use_xor, int n, int blocks, int threads) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = uniform(gen);
  DeviceBuffer<float> dx(x), dsums(blocks);
  block_sum(dx.get(), dsums.get(), n, blocks, threads, use_xor, nullptr);
  double sum = 0.0, magnitude = 0.0, emulated = 0.0;
  for (float v : x) sum += v, magnitude += std::fabs(v);
  for (float s : dsums.download()) emulated += s;
  // fp32 partial sums over at most n terms: |error| <= n * FLT_EPSILON * sum |x|.
  EXPECT_NEAR(emulated, sum, n * double(std::numeric_limits<float>::epsilon()) * magnitude)
      << (use_xor ? "xor" : "down") << " reduction, " << blocks << " x " << threads;
}

TEST(EmulatedWarp, XorShuffleReductionMatchesPlainSum) {
  expect_block_sums_match(true, 10000, 5, 128);
  expect_block_sums_match(true, 777, 3, 96);
}

TEST(EmulatedWarp, DownShuffleReductionMatchesPlainSum) {
  expect_block_sums_match(false, 10000, 5, 128);
  expect_block_sums_match(false, 31, 2, 1024);
}

TEST(EmulatedWarp, ShuffleUpScanWorksOnPartialLastWarp) {
  const int threads = 100;  // warps of 32, 32, 32 and 4 lanes
  std::vector<int> x(threads);
  std::iota(x.begin(), x.end(), 1);
  DeviceBuffer<int> dx(x), dout(threads);
  warp_inclusive_scan(dx.get(), dout.get(), threads, nullptr);
  const std::vector<int> out = dout.download();
  int running = 0;
  for (int i = 0; i < threads; ++i) {
    running = (i % 32 == 0 ? 0 : running) + x[i];
    EXPECT_EQ(out[i], running) << "thread " << i;
  }
}

TEST(EmulatedWarp, BallotAnyAllAndBlockCounts) {
  const int threads = 100;
  std::vector<int> predicate(threads, 0);
  for (int i = 0; i < threads; ++i) predicate[i] = (i % 3 == 0) || (i >= 64 && i < 96);
  DeviceBuffer<int> dp(predicate), dany(4), dall(4), dcounts(3);
  DeviceBuffer<unsigned> dballots(4);
  warp_votes(dp.get(), dballots.get(), dany.get(), dall.get(), dcounts.get(), threads, nullptr);
  const auto ballots = dballots.download();
  const auto any = dany.download(), all = dall.download(), counts = dcounts.download();
  int true_count = 0;
  for (int w = 0; w < 4; ++w) {
    unsigned expected = 0;
    for (int lane = 0; lane < 32 && w * 32 + lane < threads; ++lane)
      if (predicate[w * 32 + lane]) expected |= 1u << lane;
    const unsigned lanes = w < 3 ? 0xffffffffu : 0xfu;  // the last warp has 4 lanes
    EXPECT_EQ(ballots[w], expected) << "warp " << w;
    EXPECT_EQ(any[w], expected != 0) << "warp " << w;
    EXPECT_EQ(all[w], expected == lanes) << "warp " << w;
    true_count += __builtin_popcount(expected);
  }
  EXPECT_EQ(all[2], 1);  // lanes 64-95 are all true
  EXPECT_EQ(counts[0], true_count);
  EXPECT_EQ(counts[1], 0);
  EXPECT_EQ(counts[2], 1);
}

TEST(EmulatedWarp, ShufflesMoveHalfBf16AndDouble) {
  std::vector<__half> h(32);
  std::vector<__nv_bfloat16> b(32);
  std::vector<double> d(32);
  for (int i = 0; i < 32; ++i) {
    h[i] = __float2half(0.5f * i);
    b[i] = __float2bfloat16(-2.0f * i);
    d[i] = 1e300 / (i + 1);
  }
  DeviceBuffer<__half> dh(h), dh_out(32);
  DeviceBuffer<__nv_bfloat16> db(b), db_out(32);
  DeviceBuffer<double> dd(d), dd_out(32);
  swap_pairs_half(dh.get(), dh_out.get(), nullptr);
  swap_pairs_bf16(db.get(), db_out.get(), nullptr);
  swap_pairs_double(dd.get(), dd_out.get(), nullptr);
  const auto h_out = dh_out.download();
  const auto b_out = db_out.download();
  const auto d_out = dd_out.download();
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(__half2float(h_out[i]), __half2float(h[i ^ 1])) << i;
    EXPECT_EQ(__bfloat162float(b_out[i]), __bfloat162float(b[i ^ 1])) << i;
    EXPECT_EQ(d_out[i], d[i ^ 1]) << i;
  }
}

TEST(EmulatedWarp, MatchAnyAndReductions) {
  std::vector<int> key(32);
  for (int i = 0; i < 32; ++i) key[i] = i % 3 - 1;  // -1, 0, 1, -1, ...
  DeviceBuffer<int> dkey(key), dsums(32), dmaxes(32);
  DeviceBuffer<unsigned> dmatch(32);
  warp_match_and_reduce(dkey.get(), dmatch.get(), dsums.get(), dmaxes.get(), nullptr);
  const auto match = dmatch.download();
  const auto sums = dsums.download(), maxes = dmaxes.download();
  const int total = std::accumulate(key.begin(), key.end(), 0);
  for (int i = 0; i < 32; ++i) {
    unsigned expected = 0;
    for (int j = 0; j < 32; ++j)
      if (key[j] == key[i]) expected |= 1u << j;
    EXPECT_EQ(match[i], expected) << i;
    EXPECT_EQ(sums[i], total) << i;
    EXPECT_EQ(maxes[i], 1) << i;
  }
}

}  // namespace
}  // namespace ddpm::emu_test
