// The device math the emulator supplies, against the host's own functions:
// float intrinsics to float rounding, fp16 / bf16 math to one rounding of
// the format, bit intrinsics exactly.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

#include "tests/emulation/device_buffer.h"
#include "tests/emulation/test_kernels.cuh"

namespace ddpm::emu_test {
namespace {

TEST(EmulatedMath, IntrinsicsMatchHostFunctions) {
  const int n = 100;
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = 0.5f + 3.5f * float(i) / float(n);  // (0.5, 4)
  DeviceBuffer<float> dx(x), dout(size_t(n) * kMathResults);
  math_intrinsics(dx.get(), dout.get(), n, nullptr);
  const std::vector<float> out = dout.download();
  // Relative tolerances: float results within a few ulp (2^-21), fp16 within
  // one rounding (2^-11) plus its input's rounding, bf16 likewise (2^-8).
  const double f32 = std::ldexp(1.0, -21), f16 = 2 * std::ldexp(1.0, -10),
               bf16 = 2 * std::ldexp(1.0, -7);
  for (int i = 0; i < n; ++i) {
    const double v = x[i];
    const float* o = &out[size_t(i) * kMathResults];
    const auto near = [&](int j, double want, double relative) {
      EXPECT_NEAR(o[j], want, relative * std::fabs(want) + 1e-30)
          << "result " << j << " of x = " << v;
    };
    near(0, std::exp(v), f32);
    near(1, std::log(v), f32);
    near(2, 1.0 / v, f32);
    near(3, 1.0 / std::sqrt(v), f32);
    near(4, 1.0 / v, f32);
    near(5, v * v + 1.0, f32);
    near(6, std::fmin(std::fmax(v - 1.0, 0.0), 1.0), f32);
    near(7, std::pow(v, 1.5), f32);
    near(8, 0.5 * v + 1.0, f16);
    near(9, std::exp(v), f16);
    near(10, std::sqrt(v), f16);
    near(11, 1.0 / std::sqrt(v), f16);
    near(12, std::exp(v), bf16);
    EXPECT_EQ(o[13], float(std::popcount(unsigned(i) * 2654435761u)));
    EXPECT_EQ(o[14], float(std::countl_zero(unsigned(i + 1))));
    EXPECT_EQ(o[15], float(std::countr_zero(unsigned(i + 8)) + 1));
    EXPECT_EQ(o[16], x[i]) << "__brev twice is the identity";
    EXPECT_EQ(o[17], std::fmax(x[i], 2.0f));
    EXPECT_EQ(o[18], float(i < 3 ? i : 3));
    near(19, 0.5 * std::erfc(-(v - 2.0) / std::sqrt(2.0)), f32);
    EXPECT_NEAR(std::erf(double(o[20])), (v - 2.0) / 2.5, 1e-6) << "erfinvf of x = " << v;
  }
}

}  // namespace
}  // namespace ddpm::emu_test
