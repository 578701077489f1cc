// Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
// 1, 2, 3"), the counter-based generator cuRAND's device API also offers.
// A draw is a pure function of (key, counter), so any element's random number
// can be recomputed anywhere: in backward, in a replayed CUDA graph, on the CPU.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DDPM_HOST_DEVICE __host__ __device__
#else
#define DDPM_HOST_DEVICE
#endif

namespace ddpm {

struct PhiloxBlock {
  uint32_t v[4];
};

DDPM_HOST_DEVICE inline PhiloxBlock philox4x32_10(PhiloxBlock ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * ctr.v[2];
    const auto hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const auto hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = PhiloxBlock{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return ctr;
}

// Uniform in [0, 1) with 24 random bits: exact in float and in double.
DDPM_HOST_DEVICE inline double uniform_from_bits(uint32_t bits) {
  return static_cast<double>(bits >> 8) * (1.0 / 16777216.0);
}

// A sequential stream for host-side use (parameter initialisation, shuffling):
// key = seed, counter = (index, stream).
class Philox {
 public:
  explicit Philox(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  uint32_t next_u32() {
    if (lane_ == 4) {
      block_ = philox4x32_10(
          PhiloxBlock{{static_cast<uint32_t>(index_), static_cast<uint32_t>(index_ >> 32),
                       static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)}},
          static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32));
      ++index_;
      lane_ = 0;
    }
    return block_.v[lane_++];
  }
  double uniform() { return uniform_from_bits(next_u32()); }
  // Standard normal by Box-Muller on two uniforms (the first shifted off zero).
  double normal() {
    const double u1 = (static_cast<double>(next_u32() >> 8) + 1) * (1.0 / 16777217.0);
    const double u2 = uniform();
    return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>(uniform() * static_cast<double>(n)) % n;
  }

 private:
  uint64_t seed_, stream_, index_ = 0;
  PhiloxBlock block_{};
  int lane_ = 4;
};

}  // namespace ddpm
