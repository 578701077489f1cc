// Kernel tests of dropout.cuh against the CPU backend's dropout op (see
// kernel_test_util.h).
//
// Tolerance: none. The kernel draws the CPU's Philox numbers, keeps an
// element by an integer test equivalent to the CPU's double comparison, and
// scales with the same single fp32 multiply by float(1 / (1 - p)) (then one
// fp32 add when accumulating), so every element must equal the CPU's f32
// result exactly. Each case also checks that the floats around the output
// stayed poisoned (no write outside [0, n)) and, for p > 0, that the share of
// dropped elements is near p (both CPU and kernel dropping nothing would
// otherwise agree).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/dropout.h"
#include "kernels/dropout.cuh"
#include "kernels/vector_io.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm {
namespace {

using kernels::DropoutKey;
using testing::DeviceArray;
using testing::OpRun;

struct Case {
  int64_t n;
  double p;
  uint64_t seed = 1234;
  uint64_t step = 7;
  uint32_t salt = 3;
  bool training = true;
  int offset = 0;  // floats: 1..3 make every pointer unaligned (the scalar path)
};

void PrintTo(const Case& k, std::ostream* os) {
  *os << "n" << k.n << "_p" << k.p << "_seed" << k.seed << "_step" << k.step << "_salt" << k.salt
      << (k.training ? "" : "_inference") << "_offset" << k.offset;
}

// A device copy of `values` starting `offset` floats into a NaN-poisoned
// allocation with `offset` spare floats on each side.
struct PaddedDevice {
  PaddedDevice(const std::vector<float>& values, int offset)
      : offset(offset), n(values.size()), buffer(values.size() + 2 * size_t(offset)) {
    std::vector<float> host(buffer.size(), std::nanf(""));
    std::memcpy(host.data() + offset, values.data(), values.size() * sizeof(float));
    buffer.upload(host);
  }
  explicit PaddedDevice(size_t count, int offset)
      : offset(offset), n(count), buffer(count + 2 * size_t(offset)) {}

  float* get() const { return buffer.get() + offset; }
  // The n values; fails the test if a padding float was written.
  std::vector<float> download(const std::string& what) const {
    const std::vector<float> all = buffer.download();
    for (int i = 0; i < offset; ++i) {
      EXPECT_TRUE(std::isnan(all[size_t(i)])) << what << ": wrote before the start";
      EXPECT_TRUE(std::isnan(all[all.size() - 1 - size_t(i)])) << what << ": wrote past the end";
    }
    return {all.begin() + offset, all.begin() + offset + std::ptrdiff_t(n)};
  }

  int offset;
  size_t n;
  DeviceArray<float> buffer;
};

void expect_equal(const std::vector<float>& got, const std::vector<float>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " not written";
    ASSERT_EQ(got[i], want[i]) << what << ": element " << i;
  }
}

std::vector<float> as_floats(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

void set_floats(testing::HostTensor& t, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) t.set(int64_t(i), double(v[i]));
}

void run_case(const Case& k) {
  const auto n = size_t(k.n);
  const std::vector<float> x = testing::random_floats(n, 11 + n);
  const std::vector<float> dy = testing::random_floats(n, 12 + n);
  const std::vector<float> prior = testing::random_floats(n, 13 + n);

  // The CPU backend's f32 op: the expected bits.
  OpRun cpu(DropoutParams{k.p, k.salt}, {Shape{k.n}}, DType::f32);
  cpu.ctx = RunContext{k.seed, k.step, k.training};
  set_floats(cpu.inputs[0], x);
  const std::vector<float> y_want = as_floats(cpu.forward());
  const std::vector<float> dx_want = as_floats(cpu.backward({testing::to_double(dy)})[0]);
  std::vector<float> dx_acc_want(n);
  for (size_t i = 0; i < n; ++i) dx_acc_want[i] = prior[i] + dx_want[i];

  // The backend passes p = 0 outside training, and the step's low 32 bits.
  const double p = k.training ? k.p : 0.0;
  const DropoutKey key{k.seed, static_cast<uint32_t>(k.step), k.salt};
  const PaddedDevice x_dev(x, k.offset), dy_dev(dy, k.offset);
  PaddedDevice y_dev(n, k.offset), dx_dev(n, k.offset), dx_acc_dev(prior, k.offset);
  kernels::dropout_forward(x_dev.get(), y_dev.get(), k.n, p, key, nullptr);
  kernels::dropout_backward(dy_dev.get(), dx_dev.get(), k.n, p, key, false, nullptr);
  kernels::dropout_backward(dy_dev.get(), dx_acc_dev.get(), k.n, p, key, true, nullptr);

  const std::vector<float> y = y_dev.download("y");
  expect_equal(y, y_want, "y");
  expect_equal(dx_dev.download("dx"), dx_want, "dx");
  expect_equal(dx_acc_dev.download("dx accumulated"), dx_acc_want, "dx accumulated");

  // The dropped share: binomial(n, p), checked to 5 standard deviations.
  int64_t dropped = 0;
  for (float v : y) dropped += v == 0.0f;
  const double mean = double(k.n) * p, sd = std::sqrt(double(k.n) * p * (1 - p));
  EXPECT_LE(std::abs(double(dropped) - mean), 5 * sd + 0.5) << dropped << " of " << k.n;
}

class DropoutKernel : public ::testing::TestWithParam<Case> {};

TEST_P(DropoutKernel, MatchesCpuBackendExactly) {
  DDPM_REQUIRE_DEVICE();
  run_case(GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, DropoutKernel,
    ::testing::Values(
        // Lengths around the quad: a lone element, a short quad, whole quads, a tail.
        Case{1, 0.5}, Case{3, 0.5}, Case{4, 0.5}, Case{5, 0.3}, Case{1027, 0.1}, Case{4099, 0.5},
        // High words of seed and step (the CPU keys on the step's low 32 bits), salts.
        Case{1029, 0.25, 0x9E3779B97F4A7C15ull, (uint64_t(5) << 32) | 17, 0xFFFFFFFFu},
        Case{1029, 0.25, 42, 0, 1},
        // Unaligned pointers take the scalar path.
        Case{1031, 0.5, 5, 9, 2, true, 1}, Case{6, 0.5, 5, 9, 2, true, 3},
        // p at the ends: none dropped, almost all dropped.
        Case{1025, 0.0}, Case{1025, 0.999},
        // Inference: the identity, whatever p.
        Case{1030, 0.5, 5, 9, 2, false}, Case{1030, 0.5, 5, 9, 2, false, 2}));

// A grid of one block makes every thread loop over many quads.
TEST(DropoutKernel, GridStrideLoopsCoverEveryQuad) {
  DDPM_REQUIRE_DEVICE();
  struct Cap {
    Cap() { kernels::grid_stride_block_cap() = 1; }
    ~Cap() { kernels::grid_stride_block_cap() = 0; }
  } cap;
  run_case(Case{5003, 0.4, 77, 3, 9});
  run_case(Case{5003, 0.4, 77, 3, 9, true, 2});
}

// The step read from device memory (step_ptr: a captured training step) gives
// the mask of that step, whatever the key's own `step` says, and a new value
// there a new mask on the next launch of the same key.
TEST(DropoutKernel, StepInDeviceMemoryKeysTheMask) {
  DDPM_REQUIRE_DEVICE();
  const int64_t n = 1030;
  const std::vector<float> x = testing::random_floats(size_t(n), 21);
  const DeviceArray<float> x_dev(x);
  DeviceArray<float> y{static_cast<size_t>(n)}, want{static_cast<size_t>(n)};
  DeviceArray<uint32_t> step(1);
  for (uint32_t s : {7u, 8u}) {
    step.upload({s});
    kernels::dropout_forward(x_dev.get(), y.get(), n, 0.5, DropoutKey{99, 0, 4, step.get()},
                             nullptr);
    kernels::dropout_forward(x_dev.get(), want.get(), n, 0.5, DropoutKey{99, s, 4}, nullptr);
    expect_equal(y.download(), want.download(), "step " + std::to_string(s));
  }
  kernels::dropout_forward(x_dev.get(), want.get(), n, 0.5, DropoutKey{99, 7, 4}, nullptr);
  EXPECT_NE(y.download(), want.download());  // step 8's mask is not step 7's
}

TEST(DropoutKernel, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> a(4), b(4);
  const DropoutKey key{};
  EXPECT_THROW(kernels::dropout_forward(a.get(), b.get(), 4, 1.0, key, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::dropout_forward(a.get(), b.get(), 4, -0.1, key, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::dropout_backward(a.get(), b.get(), 4, std::nan(""), key, false, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::dropout_backward(a.get(), b.get(), -1, 0.5, key, false, nullptr),
               std::invalid_argument);
  EXPECT_NO_THROW(kernels::dropout_forward(a.get(), b.get(), 0, 0.5, key, nullptr));
}

#if !DDPM_KERNEL_TESTS_EMULATED
// A realistic activation (a CIFAR UNet's 32x32x128 map at batch 64) and a
// length with a tail, on the GPU only.
TEST(DropoutKernel, LargeTensorsMatchCpuBackend) {
  DDPM_REQUIRE_DEVICE();
  run_case(Case{int64_t(64) * 32 * 32 * 128, 0.1, 2024, 100000, 4});
  run_case(Case{(int64_t(1) << 22) + 3, 0.3, 9, 1, 1, true, 1});
}
#endif

}  // namespace
}  // namespace ddpm
