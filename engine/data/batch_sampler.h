// Seeded epoch-wise shuffling of a dataset into training batches. Epoch e's
// order is a Fisher-Yates permutation drawn from Philox(seed, kShuffleStream +
// e), so the whole state is (seed, epoch, position): a trainer saves those
// three numbers and resumes bitwise.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/random.h"

namespace ddpm {

// Philox stream of epoch 0's shuffle ("SHUF" in the high word), kept apart
// from the streams other users of the same seed draw from.
constexpr uint64_t kShuffleStream = uint64_t{0x53485546} << 32;

struct SamplerState {
  uint64_t seed = 0;
  int64_t epoch = 0;     // whose permutation is being read
  int64_t position = 0;  // how many of its entries have been handed out, [0, count)
  bool operator==(const SamplerState&) const = default;
};

// Uniform in [0, n), n >= 1, without modulo bias (Lemire's multiply-and-reject
// on 32-bit draws).
uint32_t uniform_below(Philox& rng, uint32_t n);

// Fisher-Yates: from the last position down, swap with a uniform earlier one.
void shuffle(std::span<int64_t> values, Philox& rng);

// Epoch `epoch`'s order of [0, count).
std::vector<int64_t> epoch_permutation(int64_t count, uint64_t seed, int64_t epoch);

class BatchSampler {
 public:
  // count: images in the dataset (1 to 2^32-1); throws std::invalid_argument
  // for a bad count, batch size or state.
  BatchSampler(int64_t count, int64_t batch_size, SamplerState state);
  BatchSampler(int64_t count, int64_t batch_size, uint64_t seed)
      : BatchSampler(count, batch_size, SamplerState{seed, 0, 0}) {}

  // The next batch_size indices: the rest of this epoch's order, continued
  // from the next epoch's when it runs out, so every batch is full and every
  // image comes once an epoch.
  std::vector<int64_t> next_batch();
  void next_batch(int64_t* out);

  const SamplerState& state() const { return state_; }
  int64_t batch_size() const { return batch_; }
  const std::vector<int64_t>& epoch_order() const { return order_; }

 private:
  int64_t count_, batch_;
  SamplerState state_;
  std::vector<int64_t> order_;  // epoch_permutation(count_, state_.seed, state_.epoch)
};

}  // namespace ddpm
