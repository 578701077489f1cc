// Tests of the tensor_core convolution (kernels/conv2d_tensor_core.cu),
// calling its launchers in conv2d_internal.cuh directly, against the CPU
// backend's conv2d in f64 (tests/kernels/conv2d_oracle.h).
//
// The kernels round x, w and dy to bf16 as they stage them; the oracle runs on
// the same bf16-rounded values (round_to_bf16), so what remains is fp32
// accumulation: conv2d_oracle.h's bound (terms + 4) u sum|terms|, with
// sum|terms| from the oracle on |inputs| ("magnitude"). Two additions to it:
//   - x 2 for the GPU: tensor cores have been measured to truncate rather
//     than round when they add (relative error < 2u a step). Under the
//     emulator (portable mma, round to nearest) the bound is met with a
//     factor 2 to spare.
//   - the extra terms each output gets: forward bias and residual (two terms,
//     their magnitudes added), the prefilled dx / dw added to (one term),
//     and backward-filter's split: a product then passes through its split's
//     chain (<= P / splits + 32 additions), the split sum (< splits) and the
//     add into dw; P / s + 32 + s <= P + 33 for every 1 <= s <= P, so
//     terms = P + 40 covers any cut.
// db is a column sum of the unrounded fp32 dy (P terms, then the prefill).
// One wrong term (size ~ magnitude / terms) still exceeds the bound in every
// emulated case, where 2 (terms + 44)^2 u << 1 (at most 0.03). The GPU-only
// CIFAR shapes (P = 4096) are past that point: there the check is of whole
// fragments and tiles, which any layout or indexing mistake spoils.
//
// Every output starts as NaN (DeviceArray), the accumulating ones as random
// prefills; cases cover 3x3 s1 p1, 1x1, 3x3 s2 pads (0,1,0,1) and (1,1,1,1),
// channels 3, 5, 8, 16, 40, output channels 5 .. 40, 5x7 maps, batch 1 and
// 3, reductions that are not a multiple of 16 or 32, both tile sizes (the
// emulated problems are too small to pick 128 x 128 tiles by themselves, so a
// test hook forces them), pointers that are only 4-byte aligned (the scalar
// loads of every vectorisable operand), and split backward-filter.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/conv2d.cuh"
#include "kernels/conv2d_internal.cuh"
#include "tests/kernels/conv2d_oracle.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm {
namespace {

using kernels::Conv2dShape;
using testing::ConvOracle;
using testing::DeviceArray;
using testing::expect_within;
using testing::Expected;
using testing::kFp32Unit;
using testing::round_to_bf16;

constexpr double kHardwareRounding = 2;  // see the top
constexpr int64_t kSplitTerms = 40;

struct Case {
  const char* name;
  Conv2dShape shape;
  int forced_tile = 0;  // 0: the shape decides
  int offset = 0;       // floats past the allocation's (256-byte aligned) start
};

void PrintTo(const Case& k, std::ostream* os) {
  *os << k.name;
}

Conv2dShape conv(int64_t n, int64_t h, int64_t w, int64_t c, int64_t o, int kernel, int stride,
                 int pt, int pb, int pl, int pr) {
  return Conv2dShape{n, h, w, c, o, kernel, kernel, stride, pt, pb, pl, pr};
}

class ForcedTile {
 public:
  explicit ForcedTile(int rows) { kernels::detail::conv2d_tensor_core_forced_tile() = rows; }
  ~ForcedTile() { kernels::detail::conv2d_tensor_core_forced_tile() = 0; }
  ForcedTile(const ForcedTile&) = delete;
  ForcedTile& operator=(const ForcedTile&) = delete;
};

// A device buffer whose data starts `offset` floats into its allocation.
class Buffer {
  static void check(cudaError_t e) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string("cudaMemcpy: ") + cudaGetErrorString(e));
  }

 public:
  Buffer(const std::vector<float>& host, int offset)
      : array_(host.size() + size_t(offset)), offset_(offset) {
    upload(host);
  }
  Buffer(size_t n, int offset) : array_(n + size_t(offset)), offset_(offset) {}
  float* get() const { return array_.get() + offset_; }
  size_t size() const { return array_.size() - size_t(offset_); }
  void upload(const std::vector<float>& host) {
    check(cudaMemcpy(get(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  }
  // Also where a kernel's asynchronous error shows.
  std::vector<float> download() const {
    std::vector<float> host(size());
    check(cudaMemcpy(host.data(), get(), host.size() * sizeof(float), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  DeviceArray<float> array_;
  int offset_;
};

// ------------------------------------------------------------- inputs, oracle

struct Inputs {
  std::vector<float> x, w, bias, residual, dy, dx0, dw0, db0;
};

Inputs make_inputs(const Conv2dShape& s, uint64_t seed) {
  const size_t x_size = size_t(s.in_pixels() * s.in_channels);
  const size_t y_size = size_t(s.out_pixels() * s.out_channels);
  const size_t w_size = size_t(s.out_channels * s.gemm_k());
  const size_t o = size_t(s.out_channels);
  Inputs in;
  in.x = testing::random_floats(x_size, seed);
  in.w = testing::random_floats(w_size, seed + 1, 0.2);
  in.bias = testing::random_floats(o, seed + 2);
  in.residual = testing::random_floats(y_size, seed + 3);
  in.dy = testing::random_floats(y_size, seed + 4);
  in.dx0 = testing::random_floats(x_size, seed + 5);
  in.dw0 = testing::random_floats(w_size, seed + 6);
  in.db0 = testing::random_floats(o, seed + 7);
  return in;
}

// Exact values and their bounds.
double bound_of(double magnitude, int64_t terms) {
  return kHardwareRounding * double(terms + 4) * kFp32Unit * magnitude;
}

// conv(bf16 x, bf16 w) [+ bias] [+ residual].
Expected forward_expected(const Conv2dShape& s, const Inputs& in, bool bias, bool residual) {
  ConvOracle oracle(s);
  const std::vector<float> no_bias;
  const auto value =
      oracle.forward(round_to_bf16(in.x), round_to_bf16(in.w), bias ? in.bias : no_bias);
  const auto magnitude =
      oracle.forward(testing::absolute(round_to_bf16(in.x)), testing::absolute(round_to_bf16(in.w)),
                     bias ? testing::absolute(in.bias) : no_bias);
  Expected e{value, magnitude};
  for (size_t i = 0; i < value.size(); ++i) {
    double mag = magnitude[i];
    if (residual) e.value[i] += in.residual[i], mag += std::abs(in.residual[i]);
    e.bound[i] = bound_of(mag, s.gemm_k() + 2);
  }
  return e;
}

struct GradExpected {
  Expected dx, dx_accumulated, dw, db;
};

// Gradients for dy at (x, w), on bf16-rounded operands: dx from zero and
// added to dx0; dw and db added to dw0 and db0 (as the kernels always do).
GradExpected backward_expected(const Conv2dShape& s, const Inputs& in) {
  ConvOracle oracle(s);
  const auto value =
      oracle.backward(round_to_bf16(in.x), round_to_bf16(in.w), round_to_bf16(in.dy));
  const auto magnitude = oracle.backward(testing::absolute(round_to_bf16(in.x)),
                                         testing::absolute(round_to_bf16(in.w)),
                                         testing::absolute(round_to_bf16(in.dy)));
  const int64_t taps_out = int64_t(s.kernel_h) * s.kernel_w * s.out_channels;
  const int64_t pixels = s.out_pixels(), o_count = s.out_channels;
  GradExpected g;
  g.dx = g.dx_accumulated = {value.dx, value.dx};
  for (size_t i = 0; i < value.dx.size(); ++i) {
    g.dx.bound[i] = bound_of(magnitude.dx[i], taps_out);
    g.dx_accumulated.value[i] += in.dx0[i];
    g.dx_accumulated.bound[i] = bound_of(magnitude.dx[i] + std::abs(in.dx0[i]), taps_out + 1);
  }
  g.dw = {value.dw, value.dw};
  for (size_t i = 0; i < value.dw.size(); ++i) {
    g.dw.value[i] += in.dw0[i];
    g.dw.bound[i] = bound_of(magnitude.dw[i] + std::abs(in.dw0[i]), pixels + kSplitTerms + 1);
  }
  g.db = {std::vector<double>(size_t(o_count)), std::vector<double>(size_t(o_count))};
  for (int64_t o = 0; o < o_count; ++o) {
    double sum = in.db0[size_t(o)], mag = std::abs(in.db0[size_t(o)]);
    for (int64_t p = 0; p < pixels; ++p) {
      const double v = in.dy[size_t(p * o_count + o)];
      sum += v, mag += std::abs(v);
    }
    g.db.value[size_t(o)] = sum;
    g.db.bound[size_t(o)] = bound_of(mag, pixels + kSplitTerms + 1);
  }
  return g;
}

// ------------------------------------------------------------- running the kernels

struct KernelRun {
  const Conv2dShape& s;
  int offset;
  DeviceArray<char> workspace{kernels::detail::conv2d_tensor_core_workspace_bytes(s)};

  std::vector<float> forward(const Inputs& in, bool bias, bool residual, bool residual_in_y) {
    Buffer x(in.x, offset), w(in.w, offset), b(in.bias, offset);
    Buffer res(in.residual, offset), y(in.residual.size(), offset);
    if (residual_in_y) y.upload(in.residual);
    const float* residual_ptr = !residual ? nullptr : residual_in_y ? y.get() : res.get();
    kernels::detail::conv2d_tensor_core_forward(x.get(), w.get(), bias ? b.get() : nullptr,
                                                residual_ptr, y.get(), s, workspace.get(), nullptr);
    return y.download();
  }
  std::vector<float> backward_data(const Inputs& in, bool accumulate) {
    Buffer dy(in.dy, offset), w(in.w, offset), dx(in.dx0.size(), offset);
    if (accumulate) dx.upload(in.dx0);
    kernels::detail::conv2d_tensor_core_backward_data(dy.get(), w.get(), dx.get(), s, accumulate,
                                                      workspace.get(), nullptr);
    return dx.download();
  }
  // dw (and db when with_db) from the prefills dw0, db0.
  std::pair<std::vector<float>, std::vector<float>> backward_filter(const Inputs& in,
                                                                    bool with_db) {
    Buffer x(in.x, offset), dy(in.dy, offset), dw(in.dw0, offset), db(in.db0, offset);
    kernels::detail::conv2d_tensor_core_backward_filter(
        x.get(), dy.get(), dw.get(), with_db ? db.get() : nullptr, s, workspace.get(), nullptr);
    return {dw.download(), db.download()};
  }
};

void check_case(const Case& k, uint64_t seed) {
  const Conv2dShape& s = k.shape;
  const ForcedTile tile(k.forced_tile);
  const Inputs in = make_inputs(s, seed);
  KernelRun run{s, k.offset};

  expect_within(run.forward(in, false, false, false), forward_expected(s, in, false, false),
                "forward");
  const Expected with_all = forward_expected(s, in, true, true);
  expect_within(run.forward(in, true, true, false), with_all, "forward + bias + residual");
  expect_within(run.forward(in, true, true, true), with_all, "forward + bias + residual in y");

  const GradExpected grads = backward_expected(s, in);
  expect_within(run.backward_data(in, false), grads.dx, "backward-data");
  expect_within(run.backward_data(in, true), grads.dx_accumulated, "backward-data, accumulating");

  const auto [dw, db] = run.backward_filter(in, true);
  expect_within(dw, grads.dw, "backward-filter dw");
  expect_within(db, grads.db, "backward-filter db");
  const auto [dw_alone, db_untouched] = run.backward_filter(in, false);
  expect_within(dw_alone, grads.dw, "backward-filter dw, db null");
  EXPECT_EQ(std::memcmp(db_untouched.data(), in.db0.data(), in.db0.size() * sizeof(float)), 0)
      << "db null: db must be left alone";
}

// ------------------------------------------------------------- the cases

const Case kCases[] = {
    {"3x3_s1_p1_n1_5x7_c8_o16", conv(1, 5, 7, 8, 16, 3, 1, 1, 1, 1, 1)},
    {"1x1_n3_4x4_c40_o24", conv(3, 4, 4, 40, 24, 1, 1, 0, 0, 0, 0)},
    {"3x3_s2_p0101_n1_8x8_c16_o8", conv(1, 8, 8, 16, 8, 3, 2, 0, 1, 0, 1)},
    {"3x3_s2_p1_n3_5x7_c5_o12", conv(3, 5, 7, 5, 12, 3, 2, 1, 1, 1, 1)},
    {"3x3_s1_p1_n1_6x6_c3_o40", conv(1, 6, 6, 3, 40, 3, 1, 1, 1, 1, 1)},
    {"3x3_s1_p1_n2_5x7_c40_o5", conv(2, 5, 7, 40, 5, 3, 1, 1, 1, 1, 1)},
    // Backward-filter over P = 432 pixels: 14 stages cut into 3 splits.
    {"3x3_s1_p1_n3_12x12_c8_o8_split", conv(3, 12, 12, 8, 8, 3, 1, 1, 1, 1, 1)},
    // Every vectorisable operand one float past 16-byte alignment: scalar loads.
    {"3x3_s1_p1_n1_5x7_c8_o16_unaligned", conv(1, 5, 7, 8, 16, 3, 1, 1, 1, 1, 1), 0, 1},
    // 128 x 128 tiles: two tiles along M (forward: 144 pixels; backward-data)
    // and along N (backward-filter: K = 144).
    {"3x3_s1_p1_n1_12x12_c16_o24_large", conv(1, 12, 12, 16, 24, 3, 1, 1, 1, 1, 1), 128},
    {"3x3_s2_p0101_n3_5x7_c5_o12_large", conv(3, 5, 7, 5, 12, 3, 2, 0, 1, 0, 1), 128},
    {"3x3_s1_p1_n1_5x7_c40_o24_small", conv(1, 5, 7, 40, 24, 3, 1, 1, 1, 1, 1), 64},
};

class TensorCoreConv : public ::testing::TestWithParam<Case> {};

TEST_P(TensorCoreConv, MatchesCpuOnBf16Operands) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), 101);
}

INSTANTIATE_TEST_SUITE_P(Shapes, TensorCoreConv, ::testing::ValuesIn(kCases), testing::ParamName());

// Fixed tiling and split order, no atomics: repeated runs agree bitwise (the
// emulator runs blocks on several workers in no fixed order).
TEST(TensorCoreConvKernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  const Conv2dShape s = conv(3, 12, 12, 8, 8, 3, 1, 1, 1, 1, 1);
  const Inputs in = make_inputs(s, 7);
  KernelRun run{s, 0};
  auto same = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(run.forward(in, true, true, false), run.forward(in, true, true, false)));
  EXPECT_TRUE(same(run.backward_data(in, true), run.backward_data(in, true)));
  const auto first = run.backward_filter(in, true), second = run.backward_filter(in, true);
  EXPECT_TRUE(same(first.first, second.first) && same(first.second, second.second));
}

#if !DDPM_KERNEL_TESTS_EMULATED
// CIFAR-sized layers of the UNet at batch 4, with the tile size the shape
// picks and with 128 x 128 tiles forced: the PTX mma path on real sizes.
const Case kGpuCases[] = {
    {"cifar_32x32_c128_o128", conv(4, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1)},
    {"cifar_32x32_c128_o128_large", conv(4, 32, 32, 128, 128, 3, 1, 1, 1, 1, 1), 128},
    {"cifar_16x16_c256_o256", conv(4, 16, 16, 256, 256, 3, 1, 1, 1, 1, 1)},
    {"cifar_16x16_c256_o256_large", conv(4, 16, 16, 256, 256, 3, 1, 1, 1, 1, 1), 128},
    {"cifar_in_32x32_c3_o128", conv(4, 32, 32, 3, 128, 3, 1, 1, 1, 1, 1)},
    {"cifar_down_32x32_c128_s2", conv(4, 32, 32, 128, 128, 3, 2, 0, 1, 0, 1)},
    {"cifar_skip_1x1_16x16_c128_o256", conv(4, 16, 16, 128, 256, 1, 1, 0, 0, 0, 0)},
};

class TensorCoreConvGpu : public ::testing::TestWithParam<Case> {};

TEST_P(TensorCoreConvGpu, MatchesCpuOnBf16Operands) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), 202);
}

INSTANTIATE_TEST_SUITE_P(Cifar, TensorCoreConvGpu, ::testing::ValuesIn(kGpuCases),
                         testing::ParamName());
#endif

}  // namespace
}  // namespace ddpm
