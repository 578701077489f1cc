// The first CUDA kernel (SiLU) against the CPU backend, on the GPU. Skipped,
// visibly, where no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/device_select.h"
#include "engine/random.h"
#include "kernels/check.cuh"
#include "kernels/elementwise.cuh"
#include "op_harness.h"

namespace ddpm {
namespace {

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: GPU kernel test skipped";
  }
};

TEST_F(GpuTest, SiluForwardAndBackwardMatchCpu) {
  for (int64_t n : {int64_t(1), int64_t(1000), int64_t(3 * 5 * 7 * 40 + 3)}) {
    testing::OpRun ref(SiluParams{}, {{n}}, DType::f32);
    ref.randomize(4, [](Philox& r, int) { return 4 * r.normal(); });
    const std::vector<double> y_ref = ref.forward();
    std::vector<double> dy(static_cast<size_t>(n));
    Philox rng(8);
    for (double& v : dy) v = rng.normal();
    const std::vector<double> dx_ref = ref.backward(std::vector<std::vector<double>>{dy})[0];

    std::vector<float> x(ref.inputs[0].f32), dyf(dy.begin(), dy.end());
    float *dx_d, *x_d, *y_d, *dy_d;
    const size_t bytes = size_t(n) * sizeof(float);
    DDPM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&x_d), bytes));
    DDPM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&y_d), bytes));
    DDPM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dy_d), bytes));
    DDPM_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dx_d), bytes));
    DDPM_CUDA_CHECK(cudaMemcpy(x_d, x.data(), bytes, cudaMemcpyHostToDevice));
    DDPM_CUDA_CHECK(cudaMemcpy(dy_d, dyf.data(), bytes, cudaMemcpyHostToDevice));
    DDPM_CUDA_CHECK(cudaMemset(y_d, 0xFF, bytes));  // poison: NaN where unwritten
    DDPM_CUDA_CHECK(cudaMemset(dx_d, 0xFF, bytes));
    kernels::silu_forward(x_d, y_d, n, nullptr);
    kernels::silu_backward(x_d, dy_d, dx_d, n, false, nullptr);
    std::vector<float> y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
    DDPM_CUDA_CHECK(cudaMemcpy(y.data(), y_d, bytes, cudaMemcpyDeviceToHost));
    DDPM_CUDA_CHECK(cudaMemcpy(dx.data(), dx_d, bytes, cudaMemcpyDeviceToHost));
    for (float* p : {x_d, y_d, dy_d, dx_d}) cudaFree(p);
    // expf on the GPU is within 2 ulp; a handful of fp32 operations follow.
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(y[size_t(i)], y_ref[size_t(i)], 1e-6 * (1 + std::abs(y_ref[size_t(i)]))) << i;
      ASSERT_NEAR(dx[size_t(i)], dx_ref[size_t(i)], 1e-6 * (1 + std::abs(dx_ref[size_t(i)]))) << i;
    }
  }
}

}  // namespace
}  // namespace ddpm
