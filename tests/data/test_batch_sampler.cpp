// The seeded epoch shuffler: deterministic, a permutation every epoch,
// resumable from (seed, epoch, position).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "engine/data/batch_sampler.h"

namespace ddpm {
namespace {

bool is_permutation_of_range(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != static_cast<int64_t>(i)) return false;
  return true;
}

TEST(DataSampler, UniformBelowStaysInRangeAndCoversIt) {
  Philox rng(11);
  std::vector<int> seen(7);
  for (int i = 0; i < 7000; ++i) {
    const uint32_t v = uniform_below(rng, 7);
    ASSERT_LT(v, 7u);
    ++seen[v];
  }
  // Each of 7 values expects 1000 hits, sd about 30: 850 is five sd off.
  for (int c : seen) EXPECT_GT(c, 850);
  EXPECT_EQ(uniform_below(rng, 1), 0u);
}

TEST(DataSampler, EpochPermutationsAreSeededAndDiffer) {
  const auto a = epoch_permutation(1000, 42, 0);
  EXPECT_TRUE(is_permutation_of_range(a));
  EXPECT_EQ(a, epoch_permutation(1000, 42, 0));
  EXPECT_NE(a, epoch_permutation(1000, 42, 1));
  EXPECT_NE(a, epoch_permutation(1000, 43, 0));
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  EXPECT_NE(a, identity);
  EXPECT_EQ(epoch_permutation(1, 42, 5), std::vector<int64_t>{0});
}

TEST(DataSampler, EveryImageOnceAnEpochAcrossBatchBoundaries) {
  // 10 images in batches of 4: epochs end mid-batch and continue in the next order.
  BatchSampler s(10, 4, uint64_t{5});
  std::vector<int64_t> drawn;
  for (int i = 0; i < 5; ++i) {
    const auto b = s.next_batch();
    ASSERT_EQ(b.size(), 4u);
    drawn.insert(drawn.end(), b.begin(), b.end());
  }
  ASSERT_EQ(drawn.size(), 20u);
  EXPECT_EQ(std::vector<int64_t>(drawn.begin(), drawn.begin() + 10), epoch_permutation(10, 5, 0));
  EXPECT_EQ(std::vector<int64_t>(drawn.begin() + 10, drawn.end()), epoch_permutation(10, 5, 1));
  EXPECT_EQ(s.state(), (SamplerState{5, 2, 0}));
}

TEST(DataSampler, ResumesBitwiseFromState) {
  BatchSampler a(37, 5, uint64_t{9});
  for (int i = 0; i < 11; ++i) a.next_batch();  // 55 draws: epoch 1, position 18
  const SamplerState saved = a.state();
  EXPECT_EQ(saved, (SamplerState{9, 1, 18}));
  BatchSampler b(37, 5, saved);
  for (int i = 0; i < 30; ++i) ASSERT_EQ(a.next_batch(), b.next_batch()) << "batch " << i;
  EXPECT_EQ(a.state(), b.state());
}

TEST(DataSampler, RejectsBadArguments) {
  EXPECT_THROW(BatchSampler(0, 4, uint64_t{1}), std::invalid_argument);
  EXPECT_THROW(BatchSampler(10, 0, uint64_t{1}), std::invalid_argument);
  EXPECT_THROW(BatchSampler(10, 4, SamplerState{1, 0, 10}), std::invalid_argument);
  EXPECT_THROW(BatchSampler(10, 4, SamplerState{1, -1, 0}), std::invalid_argument);
}

}  // namespace
}  // namespace ddpm
