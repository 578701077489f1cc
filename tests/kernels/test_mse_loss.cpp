// Kernel tests of mse_loss.cuh against the CPU backend's mse_loss op (see
// kernel_test_util.h).
//
// Tolerances
//   loss: against the op in f64 (the truth for these fp32 inputs). Both sum
//     the same double squares, d = double(pred) - double(target) (each
//     difference and square off by at most 2^-53 relative), in different
//     orders: each partial sum carries at most n 2^-53 sum(d^2) of error,
//     so the two double results differ by at most 2 n 2^-53 loss; the
//     kernel then rounds to float once (2^-24 relative). Bound: (2^-24 + n
//     2^-52) |loss|, which for these n is one float rounding plus ~1e-12.
//   gradients: none. g = dloss * 2 / n, d = g (pred - target) and the
//     accumulating add are the CPU's f32 operations in the same order, each
//     rounded once (the kernel forbids contracting them into an FMA), so every
//     element must equal the CPU backend's f32 op exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/mse_loss.h"
#include "kernels/mse_loss.cuh"
#include "kernels/vector_io.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm {
namespace {

using testing::DeviceArray;
using testing::OpRun;

struct Case {
  int64_t n;
  int offset = 0;            // floats: nonzero makes pred, target and gradients unaligned
  float dloss = 1.0f;        // the incoming gradient of the loss
  double target_offset = 0;  // target = offset + noise: a loss far from 1
};

void PrintTo(const Case& k, std::ostream* os) {
  *os << "n" << k.n << "_offset" << k.offset << "_dloss" << k.dloss << "_target" << k.target_offset;
}

// Device memory holding `values` from float `offset` on (the first floats
// poisoned), so a nonzero offset gives unaligned pointers.
struct OffsetDevice {
  OffsetDevice(const std::vector<float>& values, int offset)
      : offset(offset), buffer(values.size() + size_t(offset)) {
    std::vector<float> host(buffer.size(), std::nanf(""));
    std::memcpy(host.data() + offset, values.data(), values.size() * sizeof(float));
    buffer.upload(host);
  }
  OffsetDevice(size_t count, int offset) : offset(offset), buffer(count + size_t(offset)) {}
  float* get() const { return buffer.get() + offset; }
  std::vector<float> download() const {
    const std::vector<float> all = buffer.download();
    return {all.begin() + offset, all.end()};
  }
  int offset;
  DeviceArray<float> buffer;
};

void set_floats(testing::HostTensor& t, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) t.set(int64_t(i), double(v[i]));
}

void expect_equal(const std::vector<float>& got, const std::vector<double>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " not written";
    ASSERT_EQ(got[i], float(want[i])) << what << ": element " << i;
  }
}

float device_loss(const OffsetDevice& pred, const OffsetDevice& target, int64_t n) {
  DeviceArray<float> loss(1);
  DeviceArray<unsigned char> workspace(kernels::mse_loss_workspace_bytes(n));
  kernels::mse_loss_forward(pred.get(), target.get(), loss.get(), n,
                            workspace.size() ? workspace.get() : nullptr, nullptr);
  return loss.download()[0];
}

void run_case(const Case& k) {
  const auto n = size_t(k.n);
  const std::vector<float> pred = testing::random_floats(n, 21 + n);
  std::vector<float> target = testing::random_floats(n, 22 + n);
  for (float& t : target) t = float(t + k.target_offset);
  const std::vector<float> prior_pred = testing::random_floats(n, 23 + n);
  const std::vector<float> prior_target = testing::random_floats(n, 24 + n);

  // Oracles: f64 for the loss, the f32 op's bits for the gradients.
  OpRun truth(MseLossParams{}, {Shape{k.n}, Shape{k.n}}, DType::f64);
  set_floats(truth.inputs[0], pred);
  set_floats(truth.inputs[1], target);
  const double loss_want = truth.forward()[0];
  OpRun cpu(MseLossParams{}, {Shape{k.n}, Shape{k.n}}, DType::f32);
  set_floats(cpu.inputs[0], pred);
  set_floats(cpu.inputs[1], target);
  const auto grads = cpu.backward({{double(k.dloss)}});
  std::vector<double> acc_pred(n), acc_target(n);
  for (size_t i = 0; i < n; ++i) {
    acc_pred[i] = double(prior_pred[i] + float(grads[0][i]));
    acc_target[i] = double(prior_target[i] + float(grads[1][i]));
  }

  const OffsetDevice pred_dev(pred, k.offset), target_dev(target, k.offset);
  const float loss = device_loss(pred_dev, target_dev, k.n);
  const double tol = (std::ldexp(1.0, -24) + double(k.n) * std::ldexp(1.0, -52)) * loss_want;
  EXPECT_NEAR(loss, loss_want, tol);
  EXPECT_EQ(loss, device_loss(pred_dev, target_dev, k.n)) << "not reproducible";

  const DeviceArray<float> dloss(std::vector<float>{k.dloss});
  OffsetDevice dpred(n, k.offset), dtarget(n, k.offset);
  kernels::mse_loss_backward(pred_dev.get(), target_dev.get(), dloss.get(), dpred.get(),
                             dtarget.get(), k.n, false, false, nullptr);
  expect_equal(dpred.download(), grads[0], "dpred");
  expect_equal(dtarget.download(), grads[1], "dtarget");

  OffsetDevice dpred_acc(prior_pred, k.offset), dtarget_acc(prior_target, k.offset);
  kernels::mse_loss_backward(pred_dev.get(), target_dev.get(), dloss.get(), dpred_acc.get(),
                             dtarget_acc.get(), k.n, true, true, nullptr);
  expect_equal(dpred_acc.download(), acc_pred, "dpred accumulated");
  expect_equal(dtarget_acc.download(), acc_target, "dtarget accumulated");

  // One gradient at a time, the other not wanted (mixed modes).
  OffsetDevice only_pred(n, k.offset), only_target(prior_target, k.offset);
  kernels::mse_loss_backward(pred_dev.get(), target_dev.get(), dloss.get(), only_pred.get(),
                             nullptr, k.n, false, false, nullptr);
  kernels::mse_loss_backward(pred_dev.get(), target_dev.get(), dloss.get(), nullptr,
                             only_target.get(), k.n, false, true, nullptr);
  expect_equal(only_pred.download(), grads[0], "dpred alone");
  expect_equal(only_target.download(), acc_target, "dtarget alone, accumulated");
}

class MseLossKernel : public ::testing::TestWithParam<Case> {};

TEST_P(MseLossKernel, MatchesCpuBackend) {
  DDPM_REQUIRE_DEVICE();
  run_case(GetParam());
}

INSTANTIATE_TEST_SUITE_P(Shapes, MseLossKernel,
                         ::testing::Values(
                             // One block: lone element, short quads, whole quads, a tail.
                             Case{1}, Case{3}, Case{4}, Case{7, 0, 0.5f}, Case{1001},
                             // Several blocks: partials and the finishing block.
                             Case{4097, 0, 1.0f, 3.0}, Case{20003, 0, 0.25f},
                             // Unaligned: the scalar path.
                             Case{5, 1}, Case{4099, 3, 2.0f}));

// A grid of one or two blocks makes every thread loop over many quads, and
// exercises both the single-block shortcut and the finishing kernel.
TEST(MseLossKernel, GridStrideLoopsCoverEveryQuad) {
  DDPM_REQUIRE_DEVICE();
  for (unsigned cap : {1u, 2u}) {
    kernels::grid_stride_block_cap() = cap;
    run_case(Case{9001, 0, 1.5f});
    run_case(Case{9001, 2});
  }
  kernels::grid_stride_block_cap() = 0;
}

TEST(MseLossKernel, RejectsAnEmptyMeanAndAMissingWorkspace) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> a(8192), b(8192), loss(1);
  EXPECT_THROW(kernels::mse_loss_workspace_bytes(0), std::invalid_argument);
  EXPECT_THROW(kernels::mse_loss_forward(a.get(), b.get(), loss.get(), 0, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::mse_loss_backward(a.get(), b.get(), loss.get(), a.get(), nullptr, 0, false,
                                          false, nullptr),
               std::invalid_argument);
  ASSERT_GT(kernels::mse_loss_workspace_bytes(8192), 0u);
  EXPECT_THROW(kernels::mse_loss_forward(a.get(), b.get(), loss.get(), 8192, nullptr, nullptr),
               std::invalid_argument);
}

#if !DDPM_KERNEL_TESTS_EMULATED
// A CIFAR training batch's prediction (128 x 32 x 32 x 3) and a long unaligned
// vector: the full grid of partials, on the GPU only.
TEST(MseLossKernel, LargeTensorsMatchCpuBackend) {
  DDPM_REQUIRE_DEVICE();
  run_case(Case{int64_t(128) * 32 * 32 * 3});
  run_case(Case{(int64_t(1) << 22) + 1, 1, 1.0f, 2.0});
}
#endif

}  // namespace
}  // namespace ddpm
