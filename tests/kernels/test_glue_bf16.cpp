// Kernel tests of the bf16 glue kernels (issue 11): convert.cuh's casts, the
// bf16 twins of dropout, mse_loss, column_sum_add, noise_update and
// prepare_training_batch. See kernel_test_util.h and bf16_host.h (the host
// rounding to bf16, independent of the CUDA headers).
//
// References and bounds (u = 2^-24):
//   convert     f32 -> bf16: host round-to-nearest-even, bitwise (ties, the
//               overflow to infinity, subnormals, zeros and infinities included;
//               a NaN must stay a NaN). bf16 -> f32: the bits shifted, bitwise.
//   dropout     the CPU backend's f32 dropout on the widened inputs (the same
//               Philox mask, the same single fp32 product), then one rounding to
//               bf16 on the host; accumulating: the fp32 sum prior + value on the
//               host, then one rounding. No tolerance: every bit must match.
//   mse_loss    loss: the inputs are exactly what the kernel reads (pred bf16,
//               target fp32), so the truth is sum (p - t)^2 / n, taken here in
//               long double. The kernel takes each difference and square in
//               double (3 roundings of 2^-53 relative) and sums n of them in
//               double in some order ((n - 1) 2^-53 sum), divides (2^-53), rounds
//               to float (2^-24): (2^-24 + (n + 4) 2^-53) loss, doubled for the
//               second-order terms: (2^-24 + (n + 4) 2^-52) loss. It must also
//               equal mse_loss_forward on the widened pred bit for bit (the same
//               double sums in the same partition). Gradients: the host's float
//               operations in the kernel's order (g = dloss * 2 / n, d = g (p -
//               t), the accumulating add), then one bf16 rounding for dpred:
//               bitwise.
//   column sum  integers in [-8, 8] (bf16-exact, every partial sum an integer
//               below 2^24): exact. N(0, 1) bf16 values: an fp32 sum of the rows
//               terms and the prior, in any order, is within gamma_rows sum|terms|
//               of the exact sum (gamma_k = k u / (1 - k u)); and bitwise
//               column_sum_add of the widened matrix (same order), and
//               reproducible.
//   noise       bitwise noise_update on the widened model output (the same float
//   update      operations), x_model_input = the host's bf16 rounding of that x.
//   training    bitwise the fp32 overload's x_t rounded on the host, and the same
//   batch       fp32 target.
// Shapes are tiny (this family runs plain, under ASan and under TSan): odd n
// (short last quads and 8-element units), element offset 1 (unaligned:
// the scalar paths), several blocks of grid-stride loops; outputs are
// poisoned (0xFF: NaN) with guard elements around them.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "engine/ops/dropout.h"
#include "kernels/convert.cuh"
#include "kernels/diffusion.cuh"
#include "kernels/dropout.cuh"
#include "kernels/mse_loss.cuh"
#include "kernels/reduce.cuh"
#include "kernels/training_batch.cuh"
#include "kernels/vector_io.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;
using bf16 = __nv_bfloat16;

// ---- host helpers ----------------------------------------------------------------------

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
uint16_t bf16_bits(const bf16& v) {
  uint16_t b;
  std::memcpy(&b, static_cast<const void*>(&v), 2);
  return b;
}
bf16 make_bf16(uint16_t b) {
  bf16 v;
  std::memcpy(static_cast<void*>(&v), &b, 2);
  return v;
}
// Host bf16 rounding of each float (bf16_host.h's to_bf16), as device values.
std::vector<bf16> to_bf16_vector(const std::vector<float>& v) {
  std::vector<bf16> out;
  for (float f : v) out.push_back(make_bf16(to_bf16(f)));
  return out;
}
std::vector<float> widen(const std::vector<bf16>& v) {
  std::vector<float> out;
  for (const bf16& b : v) out.push_back(from_bf16(bf16_bits(b)));
  return out;
}

// got[i] is the bf16 rounding of want[i] (bit for bit), for every i.
void expect_rounded(const std::vector<bf16>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(bf16_bits(got[i]), to_bf16(want[i]))
        << what << ": element " << i << " got " << from_bf16(bf16_bits(got[i])) << " want bf16("
        << want[i] << ")";
}
void expect_bitwise(const std::vector<float>& got, const std::vector<float>& want,
                    const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(float_bits(got[i]), float_bits(want[i]))
        << what << ": element " << i << " got " << got[i] << " want " << want[i];
}

// A device copy of v in a guarded, poisoned allocation, `offset` elements in.
template <class T>
GuardedSlice<T> on_device(const std::vector<T>& v, size_t offset) {
  return GuardedSlice<T>(v, offset);
}

// Restores the grid-stride block cap when a test ends.
struct BlockCap {
  explicit BlockCap(unsigned cap) { k::grid_stride_block_cap() = cap; }
  ~BlockCap() { k::grid_stride_block_cap() = 0; }
};

// ---- convert --------------------------------------------------------------------------

// Finite floats of every kind: N(0, 1) at several scales, rounding ties (low
// half 0x8000 with an even and an odd kept part), just below and above ties,
// values that round up to the next binade, the largest floats (rounding to
// infinity), subnormals, signed zeros and infinities.
std::vector<float> conversion_inputs(size_t n, uint64_t seed) {
  std::vector<float> v = random_floats(n, seed);
  const float special[] = {bits_float(0x3F808000u),  // tie, kept part even: rounds down
                           bits_float(0x3F818000u),  // tie, kept part odd: rounds up
                           bits_float(0x3F807FFFu),  // below a tie
                           bits_float(0x3F808001u),  // above a tie
                           bits_float(0x3FFFFFFFu),  // rounds up into the next binade
                           std::numeric_limits<float>::max(),
                           -std::numeric_limits<float>::max(),
                           bits_float(0x7F7F7FFFu),  // the largest that stays finite
                           bits_float(0x00000001u),  // the smallest subnormal
                           bits_float(0x80018000u),  // a negative subnormal tie
                           0.0f,
                           -0.0f,
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity()};
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % 3 == 1) v[i] = std::ldexp(v[i], int(i % 61) - 30);  // magnitudes 2^-30 .. 2^30
    if (i % 5 == 2) v[i] = special[(i / 5) % std::size(special)];
  }
  return v;
}

const size_t kConvertSizes[] = {1, 7, 8, 9, 203};

TEST(ConvertBf16, FloatToBf16RoundsToNearestEven) {
  DDPM_REQUIRE_DEVICE();
  for (size_t n : kConvertSizes)
    for (size_t x_offset : {0, 1})
      for (size_t y_offset : {0, 1}) {
        SCOPED_TRACE("n " + std::to_string(n) + " offsets " + std::to_string(x_offset) + "/" +
                     std::to_string(y_offset));
        const std::vector<float> x = conversion_inputs(n, 10 + n);
        const auto dx = on_device(x, x_offset);
        GuardedSlice<bf16> y(n, y_offset);
        k::convert_f32_to_bf16(dx.get(), y.get(), int64_t(n), nullptr);
        expect_rounded(y.download(), x, "y");
      }
}

TEST(ConvertBf16, NanStaysNan) {
  DDPM_REQUIRE_DEVICE();
  std::vector<float> x(16, std::numeric_limits<float>::quiet_NaN());
  x[3] = bits_float(0x7F800001u);  // a NaN whose payload is all in the dropped half
  x[12] = -x[3];
  for (size_t offset : {0, 1}) {
    const auto dx = on_device(x, offset);
    GuardedSlice<bf16> y(x.size(), offset);
    k::convert_f32_to_bf16(dx.get(), y.get(), int64_t(x.size()), nullptr);
    for (const bf16& b : y.download()) EXPECT_TRUE(std::isnan(from_bf16(bf16_bits(b))));
  }
}

TEST(ConvertBf16, Bf16ToFloatIsExact) {
  DDPM_REQUIRE_DEVICE();
  for (size_t n : kConvertSizes)
    for (size_t x_offset : {0, 1})
      for (size_t y_offset : {0, 1}) {
        SCOPED_TRACE("n " + std::to_string(n) + " offsets " + std::to_string(x_offset) + "/" +
                     std::to_string(y_offset));
        // Every finite bit pattern class: random bits with the exponent kept off 0xFF.
        Philox rng(n + 99, 3);
        std::vector<bf16> x(n);
        for (bf16& b : x) {
          uint16_t bits = uint16_t(rng.next_u32());
          if ((bits & 0x7F80u) == 0x7F80u) bits &= 0xBFFFu;  // not infinity / NaN
          b = make_bf16(bits);
        }
        const auto dx = on_device(x, x_offset);
        GuardedSlice<float> y(n, y_offset);
        k::convert_bf16_to_f32(dx.get(), y.get(), int64_t(n), nullptr);
        const std::vector<float> got = y.download();
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(float_bits(got[i]), uint32_t(bf16_bits(x[i])) << 16) << "element " << i;
      }
}

// One block: every thread loops over several 8-element units and the tail.
TEST(ConvertBf16, GridStrideLoopsCoverEveryElement) {
  DDPM_REQUIRE_DEVICE();
  BlockCap cap(1);
  const size_t n = 8 * 256 * 2 + 5;
  const std::vector<float> x = conversion_inputs(n, 5);
  const auto dx = on_device(x, 0);
  GuardedSlice<bf16> y(n, 0);
  k::convert_f32_to_bf16(dx.get(), y.get(), int64_t(n), nullptr);
  const std::vector<bf16> got = y.download();
  expect_rounded(got, x, "to bf16");
  const auto dy = on_device(got, 0);
  GuardedSlice<float> back(n, 0);
  k::convert_bf16_to_f32(dy.get(), back.get(), int64_t(n), nullptr);
  expect_bitwise(back.download(), widen(got), "back to f32");
}

TEST(ConvertBf16, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  GuardedSlice<float> f(4);
  GuardedSlice<bf16> b(4);
  expect_invalid_argument("convert_f32_to_bf16", "negative",
                          [&] { k::convert_f32_to_bf16(f.get(), b.get(), -1, nullptr); });
  expect_invalid_argument("convert_bf16_to_f32", "null",
                          [&] { k::convert_bf16_to_f32(nullptr, f.get(), 4, nullptr); });
  EXPECT_NO_THROW(k::convert_f32_to_bf16(nullptr, nullptr, 0, nullptr));  // no launch
}

// ---- dropout --------------------------------------------------------------------------

struct DropoutCase {
  int64_t n;
  double p;
  size_t offset;
};

// The CPU backend's f32 dropout of x and its backward of dy (key: seed 1234,
// step 7, salt 3).
void cpu_dropout(const std::vector<float>& x, const std::vector<float>& dy, double p,
                 std::vector<float>& y, std::vector<float>& dx) {
  const int64_t n = int64_t(x.size());
  OpRun cpu(DropoutParams{p, 3}, {Shape{n}}, DType::f32);
  cpu.ctx = RunContext{1234, 7, true};
  for (int64_t i = 0; i < n; ++i) cpu.inputs[0].set(i, double(x[size_t(i)]));
  const std::vector<double> yd = cpu.forward();
  const std::vector<double> dxd = cpu.backward({to_double(dy)})[0];
  y.assign(yd.begin(), yd.end());
  dx.assign(dxd.begin(), dxd.end());
}

TEST(DropoutBf16, SameMaskAsTheCpuBackendRoundedOnce) {
  DDPM_REQUIRE_DEVICE();
  const DropoutCase cases[] = {{1, 0.5, 0},   {5, 0.3, 0},    {203, 0.5, 0},
                               {203, 0.5, 1}, {1030, 0.1, 0}, {37, 0.999, 1}};
  for (const DropoutCase& c : cases) {
    SCOPED_TRACE("n " + std::to_string(c.n) + " p " + std::to_string(c.p) + " offset " +
                 std::to_string(c.offset));
    const BlockCap cap(c.n > 1000 ? 1 : 0);  // one block: threads loop over quads
    const auto n = size_t(c.n);
    const std::vector<float> x = random_bf16_values(n, 11 + n, 2.0),
                             dy = random_bf16_values(n, 12 + n),
                             prior = random_bf16_values(n, 13 + n);
    std::vector<float> y32, dx32;
    cpu_dropout(x, dy, c.p, y32, dx32);
    std::vector<float> acc32(n);
    for (size_t i = 0; i < n; ++i) acc32[i] = prior[i] + dx32[i];  // the fp32 add, then round

    const k::DropoutKey key{1234, 7, 3};
    const auto dx_in = on_device(to_bf16_vector(x), c.offset);
    const auto ddy = on_device(to_bf16_vector(dy), c.offset);
    GuardedSlice<bf16> y(n, c.offset), dx(n, c.offset);
    auto dx_acc = on_device(to_bf16_vector(prior), c.offset);
    k::dropout_forward_bf16(dx_in.get(), y.get(), c.n, c.p, key, nullptr);
    k::dropout_backward_bf16(ddy.get(), dx.get(), c.n, c.p, key, false, nullptr);
    k::dropout_backward_bf16(ddy.get(), dx_acc.get(), c.n, c.p, key, true, nullptr);
    const std::vector<bf16> got_y = y.download();
    expect_rounded(got_y, y32, "y");
    expect_rounded(dx.download(), dx32, "dx");
    expect_rounded(dx_acc.download(), acc32, "dx accumulated");
    // The dropped share, binomial(n, p), within 5 standard deviations: a mask
    // that drops nothing (or everything) on both sides would otherwise agree.
    int64_t dropped = 0;
    for (const bf16& b : got_y) dropped += from_bf16(bf16_bits(b)) == 0.0f;
    const double mean = double(c.n) * c.p, sd = std::sqrt(double(c.n) * c.p * (1 - c.p));
    EXPECT_LE(std::abs(double(dropped) - mean), 5 * sd + 0.5) << dropped << " of " << c.n;
  }
}

// p == 0 (dropout off): a copy, or an add rounded once; the step from device
// memory keys the same mask as the key's own step.
TEST(DropoutBf16, OffCopiesAndTheStepPointerKeysTheMask) {
  DDPM_REQUIRE_DEVICE();
  const size_t n = 45;
  const std::vector<float> x = random_bf16_values(n, 21), prior = random_bf16_values(n, 22);
  for (size_t offset : {0, 1}) {
    const auto dx_in = on_device(to_bf16_vector(x), offset);
    GuardedSlice<bf16> y(n, offset);
    auto acc = on_device(to_bf16_vector(prior), offset);
    k::dropout_forward_bf16(dx_in.get(), y.get(), int64_t(n), 0.0, k::DropoutKey{}, nullptr);
    k::dropout_backward_bf16(dx_in.get(), acc.get(), int64_t(n), 0.0, k::DropoutKey{}, true,
                             nullptr);
    expect_rounded(y.download(), x, "copy");
    std::vector<float> sum(n);
    for (size_t i = 0; i < n; ++i) sum[i] = prior[i] + x[i];
    expect_rounded(acc.download(), sum, "add");
  }
  const auto dx_in = on_device(to_bf16_vector(x), 0);
  DeviceArray<uint32_t> step(std::vector<uint32_t>{7});
  GuardedSlice<bf16> y(n), want(n);
  k::dropout_forward_bf16(dx_in.get(), y.get(), int64_t(n), 0.5, k::DropoutKey{1, 0, 4, step.get()},
                          nullptr);
  k::dropout_forward_bf16(dx_in.get(), want.get(), int64_t(n), 0.5, k::DropoutKey{1, 7, 4},
                          nullptr);
  expect_rounded(y.download(), widen(want.download()), "step from device memory");
}

TEST(DropoutBf16, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  GuardedSlice<bf16> a(4), b(4);
  expect_invalid_argument("dropout_forward_bf16", "p =", [&] {
    k::dropout_forward_bf16(a.get(), b.get(), 4, 1.0, k::DropoutKey{}, nullptr);
  });
  expect_invalid_argument("dropout_backward_bf16", "negative", [&] {
    k::dropout_backward_bf16(a.get(), b.get(), -1, 0.5, k::DropoutKey{}, false, nullptr);
  });
}

// ---- mse_loss -------------------------------------------------------------------------

// n 1031: 258 quads, two blocks of partial sums (the workspace and the finish kernel).
TEST(MseLossBf16, LossAndGradients) {
  DDPM_REQUIRE_DEVICE();
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(203), int64_t(1031)})
    for (size_t offset : {0, 1}) {
      SCOPED_TRACE("n " + std::to_string(n) + " offset " + std::to_string(offset));
      const auto un = size_t(n);
      const std::vector<float> pred = random_bf16_values(un, 30 + un, 1.0, 0.25),
                               target = random_floats(un, 31 + un),
                               prior_p = random_bf16_values(un, 32 + un),
                               prior_t = random_floats(un, 33 + un);
      const auto dpred_in = on_device(to_bf16_vector(pred), offset);
      const auto dtarget = on_device(target, offset);

      // Forward against the long double truth and bitwise against the fp32 kernel.
      long double sum = 0;
      for (size_t i = 0; i < un; ++i) {
        const long double d = (long double)pred[i] - (long double)target[i];
        sum += d * d;
      }
      const double truth = double(sum / (long double)n);
      const size_t ws = k::mse_loss_workspace_bytes(n);
      DeviceArray<char> workspace(ws);
      DeviceArray<float> loss(1), loss32(1);
      k::mse_loss_forward_bf16(dpred_in.get(), dtarget.get(), loss.get(), n,
                               ws ? workspace.get() : nullptr, nullptr);
      const float got = loss.download()[0];
      EXPECT_NEAR(got, truth, (0x1p-24 + double(n + 4) * 0x1p-52) * truth);
      const auto widened = on_device(pred, offset);
      workspace.poison();
      k::mse_loss_forward(widened.get(), dtarget.get(), loss32.get(), n,
                          ws ? workspace.get() : nullptr, nullptr);
      EXPECT_EQ(float_bits(got), float_bits(loss32.download()[0])) << "differs from fp32's";

      // Backward, each gradient alone and both, fresh and accumulating.
      const float dloss = 0.75f;
      const DeviceArray<float> ddloss(std::vector<float>{dloss});
      const float g = dloss * 2.0f / float(n);
      std::vector<float> d(un);
      for (size_t i = 0; i < un; ++i) d[i] = g * (pred[i] - target[i]);
      for (bool accumulate : {false, true})
        for (int which : {1, 2, 3}) {  // 1: dpred, 2: dtarget, 3: both
          SCOPED_TRACE(std::string(accumulate ? "accumulate" : "") + " gradients " +
                       std::to_string(which));
          auto dp = accumulate ? on_device(to_bf16_vector(prior_p), offset)
                               : GuardedSlice<bf16>(un, offset);
          auto dt = accumulate ? on_device(prior_t, offset) : GuardedSlice<float>(un, offset);
          k::mse_loss_backward_bf16(dpred_in.get(), dtarget.get(), ddloss.get(),
                                    which & 1 ? dp.get() : nullptr, which & 2 ? dt.get() : nullptr,
                                    n, accumulate, accumulate, nullptr);
          std::vector<float> want_p(un), want_t(un);
          for (size_t i = 0; i < un; ++i) {
            want_p[i] = accumulate ? prior_p[i] + d[i] : d[i];
            want_t[i] = accumulate ? prior_t[i] - d[i] : -d[i];
          }
          const std::vector<bf16> got_p = dp.download();
          const std::vector<float> got_t = dt.download();
          if (which & 1)
            expect_rounded(got_p, want_p, "dpred");
          else if (accumulate)
            expect_rounded(got_p, prior_p, "dpred untouched");
          if (which & 2)
            expect_bitwise(got_t, want_t, "dtarget");
          else if (accumulate)
            expect_bitwise(got_t, prior_t, "dtarget untouched");
        }
    }
}

TEST(MseLossBf16, RejectsAnEmptyMean) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> f(1);
  expect_invalid_argument("mse_loss_forward_bf16", "mean", [&] {
    k::mse_loss_forward_bf16(nullptr, f.get(), f.get(), 0, nullptr, nullptr);
  });
  expect_invalid_argument("mse_loss_backward_bf16", "mean", [&] {
    k::mse_loss_backward_bf16(nullptr, f.get(), f.get(), nullptr, f.get(), 0, false, false,
                              nullptr);
  });
}

// ---- column_sum_add_bf16 ----------------------------------------------------------------

struct ColumnCase {
  int64_t rows, cols;
};
// One element; a few rows and columns; columns past one 32-lane tile; two
// chunks of rows (> 1024: the workspace and split_sum_add).
const ColumnCase kColumnCases[] = {{1, 1}, {7, 5}, {33, 40}, {1025, 3}};

std::vector<float> run_column_sum_bf16(const std::vector<float>& m, const std::vector<float>& prior,
                                       const ColumnCase& c, size_t offset) {
  const auto dm = on_device(to_bf16_vector(m), offset);
  auto out = on_device(prior, offset);
  const size_t ws = k::column_sum_bf16_workspace_bytes(c.rows, c.cols);
  DeviceArray<char> workspace(ws);  // poisoned
  k::column_sum_add_bf16(dm.get(), out.get(), c.rows, c.cols, ws ? workspace.get() : nullptr,
                         nullptr);
  return out.download();
}

TEST(ColumnSumBf16, ExactOnIntegers) {
  DDPM_REQUIRE_DEVICE();
  for (const ColumnCase& c : kColumnCases)
    for (size_t offset : {0, 1}) {
      SCOPED_TRACE(std::to_string(c.rows) + " x " + std::to_string(c.cols) + " offset " +
                   std::to_string(offset));
      std::vector<float> m = random_floats(size_t(c.rows * c.cols), uint64_t(c.rows + c.cols), 4.0);
      for (float& v : m) v = std::fmin(8.0f, std::fmax(-8.0f, std::round(v)));
      std::vector<float> prior(size_t(c.cols));
      for (size_t j = 0; j < prior.size(); ++j) prior[j] = float(int(j % 7) - 3);
      std::vector<float> want(prior);
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t j = 0; j < c.cols; ++j) want[size_t(j)] += m[size_t(r * c.cols + j)];
      expect_bitwise(run_column_sum_bf16(m, prior, c, offset), want, "sums");
    }
}

TEST(ColumnSumBf16, WithinGammaRowsAndBitwiseTheFp32Kernel) {
  DDPM_REQUIRE_DEVICE();
  for (const ColumnCase& c : kColumnCases)
    for (size_t offset : {0, 1}) {
      SCOPED_TRACE(std::to_string(c.rows) + " x " + std::to_string(c.cols) + " offset " +
                   std::to_string(offset));
      // Magnitudes 2^-20 .. 2^20: sums of bf16 values of similar size are
      // often exact in fp32, which would hide a change of order.
      std::vector<float> m = random_floats(size_t(c.rows * c.cols), uint64_t(c.rows));
      for (size_t i = 0; i < m.size(); ++i)
        m[i] = round_bf16(std::ldexp(m[i], int(i * 7 % 41) - 20));
      const std::vector<float> prior = random_floats(size_t(c.cols), 3);
      const std::vector<float> got = run_column_sum_bf16(m, prior, c, offset);
      // rows terms and the prior: rows additions.
      const double gamma = double(c.rows) * kU / (1 - double(c.rows) * kU);
      std::vector<double> want(prior.begin(), prior.end()), tol(size_t(c.cols));
      for (size_t j = 0; j < tol.size(); ++j) tol[j] = std::abs(double(prior[j]));
      for (int64_t r = 0; r < c.rows; ++r)
        for (int64_t j = 0; j < c.cols; ++j) {
          want[size_t(j)] += double(m[size_t(r * c.cols + j)]);
          tol[size_t(j)] += std::abs(double(m[size_t(r * c.cols + j)]));
        }
      for (double& t : tol) t *= gamma;
      expect_within(got, want, tol, "column sums");

      // The fp32 kernel on the widened matrix: the same sums in the same order.
      const DeviceArray<float> dm(m);
      DeviceArray<float> out(prior);
      const size_t ws = k::column_sum_workspace_bytes(c.rows, c.cols);
      DeviceArray<char> workspace(ws);
      k::column_sum_add(dm.get(), out.get(), c.rows, c.cols, ws ? workspace.get() : nullptr,
                        nullptr);
      expect_bitwise(got, out.download(), "against column_sum_add");
      expect_bitwise(got, run_column_sum_bf16(m, prior, c, offset), "a second run");
    }
}

TEST(ColumnSumBf16, RejectsAMissingWorkspace) {
  DDPM_REQUIRE_DEVICE();
  ASSERT_GT(k::column_sum_bf16_workspace_bytes(1025, 3), 0u);
  GuardedSlice<bf16> m(1025 * 3);
  GuardedSlice<float> out(3);
  expect_invalid_argument("column_sum_add_bf16", "workspace", [&] {
    k::column_sum_add_bf16(m.get(), out.get(), 1025, 3, nullptr, nullptr);
  });
  expect_invalid_argument("column_sum_add_bf16", "null", [&] {
    k::column_sum_add_bf16(nullptr, out.get(), 2, 3, nullptr, nullptr);
  });
  EXPECT_NO_THROW(k::column_sum_add_bf16(nullptr, nullptr, 0, 3, nullptr, nullptr));
}

// ---- noise_update_bf16 --------------------------------------------------------------------

TEST(NoiseUpdateBf16, BitwiseTheFp32UpdateOnTheWidenedModelOutput) {
  DDPM_REQUIRE_DEVICE();
  // A noisy step with clipping, and the last step (sigma 0, no clipping).
  const std::vector<k::NoiseUpdateStep> table = {
      {1.3f, -0.7f, 1.0f, 1, 0.4f, 0.9f, 0.05f, 0.2f, 999},
      {1.1f, -0.45f, 1.0f, 0, 0.6f, 0.35f, -0.02f, 0.0f, 0}};
  const DeviceArray<k::NoiseUpdateStep> steps(table);
  struct Geometry {
    int64_t batch, per_image;
    size_t offset;
  };
  // 16-byte quads; odd images (short last quads); unaligned; several blocks of quads.
  const Geometry shapes[] = {{2, 12, 0}, {3, 7, 0}, {2, 12, 1}, {1, 2056, 0}};
  for (const Geometry& s : shapes)
    for (uint32_t index : {0u, 1u})
      for (bool write_input : {true, false}) {
        SCOPED_TRACE(std::to_string(s.batch) + " x " + std::to_string(s.per_image) + " offset " +
                     std::to_string(s.offset) + " step " + std::to_string(index) +
                     (write_input ? "" : " no model input"));
        const auto n = size_t(s.batch * s.per_image);
        const DeviceArray<k::SamplingState> state(
            std::vector<k::SamplingState>{{77 + n, 3, 2, index, 0}});
        const std::vector<float> x = random_floats(n, 40 + n, 1.5),
                                 m = random_bf16_values(n, 41 + n);
        auto x32 = on_device(x, s.offset);
        const auto m32 = on_device(m, s.offset);
        k::noise_update(steps.get(), state.get(), m32.get(), x32.get(), s.batch, s.per_image,
                        nullptr);
        const std::vector<float> want = x32.download();

        auto xb = on_device(x, s.offset);
        const auto mb = on_device(to_bf16_vector(m), s.offset);
        GuardedSlice<bf16> next(n, s.offset);
        k::noise_update_bf16(steps.get(), state.get(), mb.get(), xb.get(),
                             write_input ? next.get() : nullptr, s.batch, s.per_image, nullptr);
        expect_bitwise(xb.download(), want, "x");
        const std::vector<bf16> got_next = next.download();
        if (write_input) {
          expect_rounded(got_next, want, "x_model_input");
        } else {
          for (const bf16& b : got_next) ASSERT_EQ(bf16_bits(b), 0xFFFFu) << "written";
        }
      }
}

// ---- prepare_training_batch (bf16 x_t) ---------------------------------------------------

TEST(PrepareTrainingBatchBf16, TheFp32BatchWithXtRounded) {
  DDPM_REQUIRE_DEVICE();
  const int64_t T = 50;
  std::vector<float> sa(static_cast<size_t>(T)), sb(static_cast<size_t>(T));
  for (int64_t i = 0; i < T; ++i) {  // any tables: a linear abar
    const double abar = 1.0 - double(i + 1) / double(T + 1);
    sa[size_t(i)] = float(std::sqrt(abar)), sb[size_t(i)] = float(std::sqrt(1 - abar));
  }
  const DeviceArray<float> dsa(sa), dsb(sb);
  const DeviceArray<uint32_t> step(std::vector<uint32_t>{17});
  struct Geometry {
    int64_t batch, h, w, c;
    size_t offset;
  };
  // RGB of odd size (scalar stores); grey 4x4 (quads), aligned and not.
  const Geometry shapes[] = {{2, 3, 5, 3, 0}, {3, 4, 4, 1, 0}, {3, 4, 4, 1, 1}};
  for (const Geometry& s : shapes)
    for (k::PredictionType p : {k::PredictionType::epsilon, k::PredictionType::v_prediction}) {
      SCOPED_TRACE(std::to_string(s.batch) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w) +
                   "x" + std::to_string(s.c) + " offset " + std::to_string(s.offset) +
                   " prediction " + std::to_string(int(p)));
      k::TrainingBatchConfig c;
      c.batch = s.batch, c.height = s.h, c.width = s.w, c.channels = s.c;
      c.seed = 99, c.num_train_timesteps = T, c.prediction = p;
      const auto n = size_t(s.batch * s.h * s.w * s.c);
      Philox rng(n, 8);
      std::vector<uint8_t> pixels(n);
      for (uint8_t& v : pixels) v = uint8_t(rng.next_u32());
      std::vector<int32_t> t;
      std::vector<uint8_t> flip;
      for (int64_t b = 0; b < s.batch; ++b)
        t.push_back(int32_t(17 * b % T)), flip.push_back(uint8_t(b % 2));
      const DeviceArray<uint8_t> dpixels(pixels), dflip(flip);
      const DeviceArray<int32_t> dt(t);

      GuardedSlice<float> x32(n, s.offset), target32(n, s.offset), target(n, s.offset);
      GuardedSlice<bf16> xb(n, s.offset);
      k::prepare_training_batch(dpixels.get(), dflip.get(), dt.get(), dsa.get(), dsb.get(),
                                step.get(), x32.get(), target32.get(), c, nullptr);
      k::prepare_training_batch(dpixels.get(), dflip.get(), dt.get(), dsa.get(), dsb.get(),
                                step.get(), xb.get(), target.get(), c, nullptr);
      const std::vector<float> want_x = x32.download();
      expect_rounded(xb.download(), want_x, "x_t");
      expect_bitwise(target.download(), target32.download(), "target");
    }
}

}  // namespace
}  // namespace ddpm::testing
