#include "engine/data/batch_sampler.h"

#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace ddpm {

uint32_t uniform_below(Philox& rng, uint32_t n) {
  uint64_t m = uint64_t{rng.next_u32()} * n;
  auto low = static_cast<uint32_t>(m);
  if (low < n) {
    const uint32_t threshold = (0u - n) % n;  // 2^32 mod n: the draws that would bias
    while (low < threshold) {
      m = uint64_t{rng.next_u32()} * n;
      low = static_cast<uint32_t>(m);
    }
  }
  return static_cast<uint32_t>(m >> 32);
}

void shuffle(std::span<int64_t> values, Philox& rng) {
  if (values.size() > 0xffffffffu)
    throw std::invalid_argument("shuffle: at most 2^32-1 values, got " +
                                std::to_string(values.size()));
  for (size_t i = values.size(); i > 1; --i) {
    const uint32_t j = uniform_below(rng, static_cast<uint32_t>(i));
    std::swap(values[i - 1], values[j]);
  }
}

std::vector<int64_t> epoch_permutation(int64_t count, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), int64_t{0});
  Philox rng(seed, kShuffleStream + static_cast<uint64_t>(epoch));
  shuffle(order, rng);
  return order;
}

BatchSampler::BatchSampler(int64_t count, int64_t batch_size, SamplerState state)
    : count_(count), batch_(batch_size), state_(state) {
  if (count < 1 || count > 0xffffffffll)
    throw std::invalid_argument("BatchSampler: dataset size " + std::to_string(count) +
                                " must be 1 to 2^32-1");
  if (batch_size < 1)
    throw std::invalid_argument("BatchSampler: batch size " + std::to_string(batch_size) +
                                " must be at least 1");
  if (state.epoch < 0 || state.position < 0 || state.position >= count)
    throw std::invalid_argument("BatchSampler: state epoch " + std::to_string(state.epoch) +
                                ", position " + std::to_string(state.position) +
                                " is outside epoch >= 0, position in [0, " + std::to_string(count) +
                                ")");
  order_ = epoch_permutation(count_, state_.seed, state_.epoch);
}

void BatchSampler::next_batch(int64_t* out) {
  for (int64_t i = 0; i < batch_; ++i) {
    out[i] = order_[static_cast<size_t>(state_.position)];
    if (++state_.position == count_) {
      ++state_.epoch;
      state_.position = 0;
      order_ = epoch_permutation(count_, state_.seed, state_.epoch);
    }
  }
}

std::vector<int64_t> BatchSampler::next_batch() {
  std::vector<int64_t> batch(static_cast<size_t>(batch_));
  next_batch(batch.data());
  return batch;
}

}  // namespace ddpm
