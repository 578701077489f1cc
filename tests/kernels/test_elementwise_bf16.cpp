// Kernel tests of elementwise_bf16.cuh (see kernel_test_util.h, bf16_host.h)
// against plain f64 references on the same bf16 inputs (N(0, 1) values rounded
// to bf16 on the host: the kernels' widened loads see exactly these).
//
// Bounds (u = 2^-24): each op's fp32 error e, counted per operation below
// (doubled for second-order terms and libm slack), then one rounding to bf16:
// bf16_bound(want, e) = e + 2^-8 (|want| + e) + 2^-134. An accumulating output
// first adds in fp32 to the bf16 prior: e += u (|prior| + |result|).
//   silu      x / (1 + expf(-x)): expf within 2 ulp, the add and the divide:
//             4 u |y|; e = 8 u |y|.
//   silu'     dy s (1 + x (1 - s)), s to 4 u: e = 2 (|dy| s (5 u |1 + x (1 - s)|
//             + 5 u |x|) + 2 u |d|).
//   add       scale (a + b): two roundings, e = 2 (2 u |y|).
//   add'      scale dy: e = 2 u |g|; broadcast db: scale * a sum of P terms
//             through at most P fp32 additions: e = 2 (P u |scale| sum|dy| + u |db|).
//   upsample  forward: copies, exact. Backward: 4 terms, 3 additions:
//             e = 2 (3 u sum|dy|).
//   concat    copies: exact (accumulating: the add's rounding).
//   timestep  arg = scale (t expf(e_i)), e_i = (-ln P i) / d with 3 roundings:
//             |d arg| <= |arg| (3 u |e_i| + 2 u (expf) + 2 u); sinf / cosf 2 ulp:
//             e = 2 (|d arg| + 2 u).
// Sizes are tiny; odd n (a scalar tail after the 8-wide units), channels not
// divisible by 8 (scalar path), offset 1 element (unaligned: scalar path).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kernels/elementwise_bf16.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

double sig(double x) {
  return 1 / (1 + std::exp(-x));
}

// want + prior with the accumulating add's rounding in e, then the bf16 store.
void finish(std::vector<double>& want, std::vector<double>& e, const std::vector<float>* prior) {
  for (size_t i = 0; i < want.size(); ++i) {
    if (prior) {
      want[i] += double((*prior)[i]);
      e[i] += kU * (std::abs(double((*prior)[i])) + std::abs(want[i]));
    }
    e[i] = bf16_bound(want[i], e[i]);
  }
}

struct Variant {
  size_t offset;
  bool accumulate;
  std::string name() const {
    return std::string(offset ? "unaligned" : "aligned") + (accumulate ? " accumulate" : "");
  }
};
const Variant kVariants[] = {{0, false}, {1, false}, {0, true}, {1, true}};

TEST(ElementwiseBf16, Silu) {
  DDPM_REQUIRE_DEVICE();
  for (int64_t n : {int64_t(1), int64_t(8), int64_t(203)})
    for (const Variant& v : kVariants) {
      SCOPED_TRACE("n " + std::to_string(n) + " " + v.name());
      const auto x = random_bf16_values(size_t(n), 1 + size_t(n), 3.0);
      const auto dy = random_bf16_values(size_t(n), 2 + size_t(n));
      const auto prior = random_bf16_values(size_t(n), 3 + size_t(n));
      DeviceBf16 dx_(x, v.offset), ddy(dy, v.offset), y(size_t(n), v.offset);
      k::silu_forward_bf16(dx_.get(), y.get(), n, nullptr);
      std::vector<double> want(static_cast<size_t>(n)), e(static_cast<size_t>(n));
      for (size_t i = 0; i < want.size(); ++i)
        want[i] = x[i] * sig(x[i]), e[i] = 8 * kU * std::abs(want[i]);
      finish(want, e, nullptr);
      expect_within(y.download(), want, e, "silu y");

      DeviceBf16 dx = v.accumulate ? DeviceBf16(prior, v.offset) : DeviceBf16(size_t(n), v.offset);
      k::silu_backward_bf16(dx_.get(), ddy.get(), dx.get(), n, v.accumulate, nullptr);
      for (size_t i = 0; i < want.size(); ++i) {
        const double s = sig(x[i]), inner = 1 + x[i] * (1 - s);
        want[i] = dy[i] * s * inner;
        e[i] = 2 * (std::abs(dy[i]) * s * (5 * kU * std::abs(inner) + 5 * kU * std::abs(x[i])) +
                    2 * kU * std::abs(want[i]));
      }
      finish(want, e, v.accumulate ? &prior : nullptr);
      expect_within(dx.download(), want, e, "silu dx");
    }
}

TEST(ElementwiseBf16, AddSameShapeAndBroadcast) {
  DDPM_REQUIRE_DEVICE();
  struct Shape {
    int64_t samples, positions, channels;  // channels 0: same-shape b
  };
  for (const Shape& s :
       {Shape{1, 1, 0}, Shape{3, 67, 0}, Shape{2, 5, 16}, Shape{3, 7, 12}, Shape{2, 19, 40}})
    for (const Variant& v : kVariants) {
      const int64_t c = s.channels ? s.channels : 1;
      const int64_t n = s.samples * s.positions * c;
      const int64_t per_sample = s.channels ? s.positions * c : 0;
      SCOPED_TRACE("n " + std::to_string(n) + " channels " + std::to_string(s.channels) + " " +
                   v.name());
      const float scale = 0.7f;
      const size_t nb = s.channels ? size_t(s.samples * c) : size_t(n);
      const auto a = random_bf16_values(size_t(n), 10), b = random_bf16_values(nb, 11);
      const auto dy = random_bf16_values(size_t(n), 12);
      const auto pa = random_bf16_values(size_t(n), 13), pb = random_bf16_values(nb, 14);
      auto b_index = [&](size_t i) {
        return s.channels ? size_t(int64_t(i) / per_sample * c + int64_t(i) % c) : i;
      };
      DeviceBf16 da_(a, v.offset), db_(b, v.offset), y(size_t(n), v.offset), ddy(dy, v.offset);
      k::add_forward_bf16(da_.get(), db_.get(), y.get(), n, s.channels, per_sample, scale, nullptr);
      std::vector<double> want(static_cast<size_t>(n)), e(static_cast<size_t>(n));
      for (size_t i = 0; i < want.size(); ++i)
        want[i] = double(scale) * (double(a[i]) + b[b_index(i)]), e[i] = 4 * kU * std::abs(want[i]);
      finish(want, e, nullptr);
      expect_within(y.download(), want, e, "add y");

      DeviceBf16 ga = v.accumulate ? DeviceBf16(pa, v.offset) : DeviceBf16(size_t(n), v.offset);
      DeviceBf16 gb = v.accumulate ? DeviceBf16(pb, v.offset) : DeviceBf16(nb, v.offset);
      k::add_backward_bf16(ddy.get(), ga.get(), gb.get(), n, s.channels, per_sample, scale,
                           v.accumulate, v.accumulate, nullptr);
      std::vector<double> wa(static_cast<size_t>(n)), ea(static_cast<size_t>(n)), wb(nb, 0.0),
          eb(nb, 0.0), mag(nb, 0.0);
      for (size_t i = 0; i < wa.size(); ++i) {
        wa[i] = double(scale) * dy[i], ea[i] = 2 * kU * std::abs(wa[i]);
        wb[b_index(i)] += double(scale) * dy[i], mag[b_index(i)] += std::abs(double(scale) * dy[i]);
      }
      const double P = double(s.channels ? s.positions : 1);
      for (size_t j = 0; j < nb; ++j) eb[j] = 2 * (P * kU * mag[j] + kU * std::abs(wb[j]));
      finish(wa, ea, v.accumulate ? &pa : nullptr);
      finish(wb, eb, v.accumulate ? &pb : nullptr);
      expect_within(ga.download(), wa, ea, "add da");
      expect_within(gb.download(), wb, eb, "add db");
    }
}

TEST(ElementwiseBf16, Upsample2x) {
  DDPM_REQUIRE_DEVICE();
  struct Shape {
    int64_t n, h, w, c;
  };
  for (const Shape& s : {Shape{1, 1, 1, 1}, Shape{2, 3, 5, 8}, Shape{1, 3, 2, 12}})
    for (const Variant& v : kVariants) {
      SCOPED_TRACE("c " + std::to_string(s.c) + " " + v.name());
      const size_t nx = size_t(s.n * s.h * s.w * s.c), ny = 4 * nx;
      const auto x = random_bf16_values(nx, 20), dy = random_bf16_values(ny, 21),
                 prior = random_bf16_values(nx, 22);
      DeviceBf16 dxin(x, v.offset), y(ny, v.offset), ddy(dy, v.offset);
      k::upsample2x_forward_bf16(dxin.get(), y.get(), s.n, s.h, s.w, s.c, nullptr);
      const std::vector<float> got = y.download();
      std::vector<double> sum(nx, 0.0), mag(nx, 0.0);
      for (int64_t b = 0; b < s.n; ++b)
        for (int64_t r = 0; r < 2 * s.h; ++r)
          for (int64_t q = 0; q < 2 * s.w; ++q)
            for (int64_t c = 0; c < s.c; ++c) {
              const size_t o = size_t(((b * 2 * s.h + r) * 2 * s.w + q) * s.c + c);
              const size_t i = size_t(((b * s.h + r / 2) * s.w + q / 2) * s.c + c);
              ASSERT_EQ(got[o], x[i]) << "y element " << o;  // a copy: exact
              sum[i] += dy[o], mag[i] += std::abs(double(dy[o]));
            }
      DeviceBf16 dx = v.accumulate ? DeviceBf16(prior, v.offset) : DeviceBf16(nx, v.offset);
      k::upsample2x_backward_bf16(ddy.get(), dx.get(), s.n, s.h, s.w, s.c, v.accumulate, nullptr);
      std::vector<double> e(nx);
      for (size_t i = 0; i < nx; ++i) e[i] = 2 * 3 * kU * mag[i];
      finish(sum, e, v.accumulate ? &prior : nullptr);
      expect_within(dx.download(), sum, e, "upsample dx");
    }
}

TEST(ElementwiseBf16, ConcatAndSplit) {
  DDPM_REQUIRE_DEVICE();
  struct Shape {
    int64_t rows, xc, yc, offset;
  };
  for (const Shape& s : {Shape{3, 8, 24, 16}, Shape{5, 3, 7, 2}, Shape{2, 16, 16, 0}})
    for (const Variant& v : kVariants) {
      SCOPED_TRACE("x_channels " + std::to_string(s.xc) + " " + v.name());
      const size_t nx = size_t(s.rows * s.xc), ny = size_t(s.rows * s.yc);
      const auto x = random_bf16_values(nx, 30), dy = random_bf16_values(ny, 31),
                 prior = random_bf16_values(nx, 32);
      DeviceBf16 dxin(x, v.offset), y(ny, v.offset), ddy(dy, v.offset);
      k::concat_channels_forward_bf16(dxin.get(), y.get(), s.rows, s.xc, s.yc, s.offset, nullptr);
      const std::vector<float> got = y.download();
      std::vector<double> want(nx), e(nx, 0.0);
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t j = 0; j < s.yc; ++j) {
          const size_t o = size_t(r * s.yc + j);
          if (j >= s.offset && j < s.offset + s.xc) {
            ASSERT_EQ(got[o], x[size_t(r * s.xc + j - s.offset)]) << "y element " << o;
            want[size_t(r * s.xc + j - s.offset)] = dy[o];
          } else {
            ASSERT_TRUE(std::isnan(got[o])) << "y element " << o << " outside x's columns written";
          }
        }
      DeviceBf16 dx = v.accumulate ? DeviceBf16(prior, v.offset) : DeviceBf16(nx, v.offset);
      k::concat_channels_backward_bf16(ddy.get(), dx.get(), s.rows, s.xc, s.yc, s.offset,
                                       v.accumulate, nullptr);
      finish(want, e, v.accumulate ? &prior : nullptr);
      expect_within(dx.download(), want, e, "concat dx");
    }
}

TEST(ElementwiseBf16, TimestepEmbedding) {
  DDPM_REQUIRE_DEVICE();
  const std::vector<float> t = {0.0f, 1.0f, 17.0f, 999.0f, 500.5f};
  const int64_t n = int64_t(t.size());
  for (int64_t dim : {int64_t(2), int64_t(7), int64_t(32)})
    for (bool flip : {false, true}) {
      SCOPED_TRACE("dim " + std::to_string(dim) + (flip ? " flip" : ""));
      const float shift = 0.0f, period = 10000.0f, scale = 1.0f;  // diffusers UNet2DModel defaults
      DeviceF32 dt(t, 0);
      DeviceBf16 y(size_t(n * dim), 0);
      k::timestep_embedding_forward_bf16(dt.get(), y.get(), n, dim, flip, shift, period, scale,
                                         nullptr);
      const int64_t half = dim / 2;
      std::vector<double> want(size_t(n * dim), 0.0), e(want.size(), 0.0);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t i = 0; i < half; ++i) {
          const double ex = -std::log(double(period)) * double(i) / (double(half) - shift);
          const double arg = double(scale) * t[size_t(b)] * std::exp(ex);
          const double darg = std::abs(arg) * (3 * kU * std::abs(ex) + 4 * kU);
          const size_t sin_at = size_t(b * dim + (flip ? half + i : i));
          const size_t cos_at = size_t(b * dim + (flip ? i : half + i));
          want[sin_at] = std::sin(arg), want[cos_at] = std::cos(arg);
          e[sin_at] = e[cos_at] = 2 * (darg + 2 * kU);
        }
      finish(want, e, nullptr);
      expect_within(y.download(), want, e, "embedding");
    }
}

TEST(ElementwiseBf16, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceBf16 a(16, 0), b(16, 0);
  EXPECT_THROW(k::silu_forward_bf16(a.get(), b.get(), -1, nullptr), std::invalid_argument);
  EXPECT_THROW(k::silu_forward_bf16(nullptr, b.get(), 4, nullptr), std::invalid_argument);
  EXPECT_THROW(k::add_forward_bf16(a.get(), a.get(), b.get(), 16, 3, 8, 1.0f, nullptr),
               std::invalid_argument);  // per_sample not a multiple of channels
  EXPECT_THROW(
      k::add_backward_bf16(a.get(), b.get(), b.get(), 12, 4, 8, 1.0f, false, false, nullptr),
      std::invalid_argument);  // n not a multiple of per_sample
  EXPECT_THROW(k::concat_channels_forward_bf16(a.get(), b.get(), 2, 4, 6, 3, nullptr),
               std::invalid_argument);
  EXPECT_THROW(k::upsample2x_forward_bf16(a.get(), b.get(), 1, -1, 1, 1, nullptr),
               std::invalid_argument);
  EXPECT_THROW(
      k::timestep_embedding_forward_bf16(nullptr, b.get(), 1, 1, false, 0, 1e4f, 1, nullptr),
      std::invalid_argument);
}

}  // namespace
}  // namespace ddpm::testing
