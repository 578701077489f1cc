// cuRAND's Philox generator inside emulated kernels: the raw stream equals the
// published Philox4x32-10 known-answer vector, uniforms lie in (0, 1], the same
// (seed, subsequence, offset) gives the same numbers in every block, and
// curand_normal4 has the moments of a standard normal.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

TEST(EmulatedPhilox, RawDrawsMatchRandom123KnownAnswer) {
  // Random123's kat_vectors, philox4x32 with 10 rounds, counter 0 and key 0:
  // curand_init(seed 0, subsequence 0, offset 0) starts exactly there.
  DeviceBuffer<unsigned> out(4);
  philox_raw(0, 0, 0, out.get(), 4, nullptr);
  EXPECT_EQ(out.download(),
            (std::vector<unsigned>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
}

TEST(EmulatedPhilox, UniformInOpenClosedUnitIntervalAndSameInEveryBlock) {
  const int blocks = 4, per_block = 256;
  DeviceBuffer<float> out(size_t(blocks) * per_block);
  philox_uniform(1234, 7, 3, out.get(), blocks, per_block, nullptr);
  const std::vector<float> u = out.download();
  for (float v : u) {
    EXPECT_GT(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
  for (int b = 1; b < blocks; ++b)
    for (int i = 0; i < per_block; ++i)
      ASSERT_EQ(u[size_t(b) * per_block + i], u[i]) << "block " << b << " draw " << i;

  DeviceBuffer<float> other(per_block);
  philox_uniform(1234, 8, 3, other.get(), 1, per_block, nullptr);
  const std::vector<float> v = other.download();
  int equal = 0;
  for (int i = 0; i < per_block; ++i) equal += v[i] == u[i];
  EXPECT_LT(equal, 3) << "another subsequence must give other numbers";
}

TEST(EmulatedPhilox, Normal4HasStandardNormalMoments) {
  const int n4 = 4096, n = 4 * n4;
  DeviceBuffer<float> out(n);
  philox_normal4(42, out.get(), n4, nullptr);
  double sum = 0.0, squares = 0.0;
  for (float v : out.download()) sum += v, squares += double(v) * v;
  const double mean = sum / n, variance = squares / n - mean * mean;
  // Five standard errors: sd(mean) = 1/sqrt(n), sd(variance) = sqrt(2/n).
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(double(n)));
  EXPECT_NEAR(variance, 1.0, 5.0 * std::sqrt(2.0 / n));
}

}  // namespace
}  // namespace ddpm::emu_test
