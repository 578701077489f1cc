// Memory under the emulator: atomics from many threads and blocks, dynamic
// shared memory, shared memory poisoned at every block start, and the emulated
// cudaMalloc / cudaMemcpy checks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/emulation/emulator_api.h"
#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

TEST(EmulatedAtomics, ManyThreadsCountToOneCounter) {
  DeviceBuffer<unsigned> counter(std::vector<unsigned>{0});
  const int blocks = 8, threads = 128, adds = 50;
  atomic_count(counter.get(), adds, blocks, threads, nullptr);
  EXPECT_EQ(counter.download()[0], unsigned(blocks * threads * adds));
}

TEST(EmulatedAtomics, FloatAtomicAddTotalWithinRounding) {
  const int n = 4096;
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> x(n);
  double sum = 0.0;
  for (float& v : x) sum += (v = uniform(gen));
  DeviceBuffer<float> dx(x), total(std::vector<float>{0.0f});
  atomic_float_sum(dx.get(), total.get(), n, nullptr);
  // n fp32 additions in some order of non-negative terms: |error| <= n * FLT_EPSILON * sum.
  EXPECT_NEAR(total.download()[0], sum, n * double(std::numeric_limits<float>::epsilon()) * sum);
}

TEST(EmulatedAtomics, MaxMinCasExchIncSubAndHalfTypes) {
  const int n = 200;  // bf16 holds every integer up to 256 exactly
  std::vector<int> x(n);
  for (int i = 0; i < n; ++i) x[i] = (i * 37) % 101 - 50;
  // results: max, min, CAS flag, CAS wins, exch, inc modulo 10, sub
  DeviceBuffer<int> dx(x),
      results(std::vector<int>{std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), 0,
                               0, -1, 0, 1000});
  DeviceBuffer<double> dsum(std::vector<double>{0.0});
  DeviceBuffer<__half> hsum(std::vector<__half>{__float2half(0.0f)});
  DeviceBuffer<__nv_bfloat16> bsum(std::vector<__nv_bfloat16>{__float2bfloat16(0.0f)});
  atomic_mix(dx.get(), n, results.get(), dsum.get(), hsum.get(), bsum.get(), nullptr);
  const std::vector<int> r = results.download();
  EXPECT_EQ(r[0], 50);
  EXPECT_EQ(r[1], -50);
  EXPECT_EQ(r[2], 1);
  EXPECT_EQ(r[3], 1) << "exactly one atomicCAS claim must win";
  EXPECT_GE(r[4], 0);
  EXPECT_LT(r[4], n);
  EXPECT_EQ(r[5], n % 10);
  EXPECT_EQ(r[6], 1000 - 2 * n);
  EXPECT_EQ(dsum.download()[0], double(n));
  EXPECT_EQ(__half2float(hsum.download()[0]), float(n));
  EXPECT_EQ(__bfloat162float(bsum.download()[0]), float(n));
}

TEST(EmulatedSharedMemory, DynamicSharedMemoryReversesEachBlock) {
  const int n = 1000, threads = 96;  // the last block is partial
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = float(i);
  DeviceBuffer<float> dx(x), dy(n);
  reverse_in_blocks(dx.get(), dy.get(), n, threads, nullptr);
  const std::vector<float> y = dy.download();
  for (int base = 0; base < n; base += threads) {
    const int count = std::min(threads, n - base);
    for (int t = 0; t < count; ++t) ASSERT_EQ(y[base + t], x[base + count - 1 - t]) << base + t;
  }
}

// Blocks that run one after another on one worker thread would see each
// other's shared memory; every block must instead start from 0xFF bytes.
TEST(EmulatedSharedMemory, StaticAndDynamicSharedMemoryPoisonedAtBlockStart) {
  const int blocks = 12;
  const int workers = ddpm::emu::worker_count();
  for (int w : {1, 2}) {
    ddpm::emu::set_worker_count(w);
    DeviceBuffer<unsigned> static_bits(blocks), dynamic_bits(blocks);
    probe_shared_poison(static_bits.get(), dynamic_bits.get(), blocks, nullptr);
    const auto s = static_bits.download(), d = dynamic_bits.download();
    for (int b = 0; b < blocks; ++b) {
      EXPECT_EQ(s[b], 0xffffffffu) << "static __shared__ of block " << b << ", " << w << " workers";
      EXPECT_EQ(d[b], 0xffffffffu) << "dynamic shared of block " << b << ", " << w << " workers";
    }
  }
  ddpm::emu::set_worker_count(workers);
}

TEST(EmulatedRuntime, CudaMallocIsPoisonedAndCopiesAreChecked) {
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 16 * sizeof(float)), cudaSuccess);
  std::vector<float> host(16, 1.0f);
  ASSERT_EQ(cudaMemcpy(host.data(), d, 16 * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (float v : host) EXPECT_TRUE(std::isnan(v)) << "fresh device memory reads as NaN";

  // The device side of a copy must lie inside one cudaMalloc allocation.
  std::vector<float> other(16);
  EXPECT_EQ(cudaMemcpy(other.data(), host.data(), 16 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue);
  EXPECT_NE(ddpm::emu::last_error_detail().find("destination"), std::string::npos)
      << ddpm::emu::last_error_detail();
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "cudaGetLastError resets the error";
  EXPECT_EQ(cudaMemcpy(d + 8, host.data(), 9 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue)
      << "one float past the allocation";
  EXPECT_EQ(cudaMemset(d, 0, 16 * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaFree(host.data()), cudaErrorInvalidValue);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaErrorInvalidValue) << "double free";
  (void)cudaGetLastError();
}

}  // namespace
}  // namespace ddpm::emu_test
