// Kernel tests of group_norm_bf16.cuh (see kernel_test_util.h, bf16_host.h):
// the bf16 GroupNorm (+ fused add, + SiLU) forward and backward against a
// plain f64 reference on the same bf16 inputs.
//
// Oracle: x and dy are N(0, 1) (+ an offset) rounded to bf16 on the host, so
// the kernel's widened loads see exactly the values the oracle sees; bias,
// gamma, beta are arbitrary fp32. The statistics are checked against the f64
// ones; y and the backward against f64 formulas evaluated on the kernel's own
// mean and rstd (the backward kernels use them), so each output's bound covers
// only the arithmetic that produces it.
//
// Bounds (u = 2^-24, fp32; the derivation of the fp32 part is
// test_group_norm.cpp's, "tolerances", which these kernels share op for op:
// the same formulas, only loads and stores differ). A sum whose terms pass
// through at most K fp32 additions is off by K u sum|terms|; here every chain
// is a thread's rows + the TY row-threads + a group's channels + the chunks +
// the batch <= pixels + 256 + C + N (chunks x rows = pixels): K is that.
//   mean: 2 (u mean|h| [bias] + K u mean|h - mean| + 2 u |mean|)
//   rstd: 2 ((K/2 + 2) u + u mean(|d| |h|) / var [bias]) rstd
//   y (own stats): e = 2 (|gamma| r + 2 u |gamma xhat| + u |z|), r = u (rstd |h|
//     [bias] + 2 |xhat|); with SiLU e = 2 (1.1 (...) + 4 u |y|). Then the bf16
//     store: bf16_bound(y, e) = e + 2^-8 (|y| + e) + 2^-134.
//   dx, dbias, dgamma, dbeta: the fp32 test's backward terms (A, B group means
//     through K-chains, SiLU' to 6 u, |SiLU''| <= 0.5), doubled; dx then
//     bf16_bound (accumulating: + u (|prior| + |result|) for the fp32 add
//     first, the prior being the bf16 value read). dbias, dgamma, dbeta are
//     fp32 outputs: the fp32 bound alone (+ u (|want| + 2 |prior|) when adding).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/group_norm_bf16.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/group_norm_run.h"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

using kernels::GroupNormShape;

constexpr float kEps = 1e-5f;

using Case = GroupNormTestCase;

struct Inputs {
  std::vector<float> x, bias, gamma, beta, dy, dx0, dbias0, dparam0;
};

Inputs make_inputs(const Case& k, uint64_t seed) {
  Inputs in;
  in.x = random_bf16_values(k.numel(), seed, 1.0, k.offset);
  in.dy = random_bf16_values(k.numel(), seed + 1);
  in.dx0 = random_bf16_values(k.numel(), seed + 2);  // a bf16 gradient buffer's prior contents
  if (k.bias) {
    in.bias = random_floats(size_t(k.n * k.c), seed + 3);
    in.dbias0 = random_floats(size_t(k.n * k.c), seed + 4);
  }
  if (k.affine) {
    in.gamma = random_floats(size_t(k.c), seed + 5);
    in.beta = random_floats(size_t(k.c), seed + 6);
    in.dparam0 = random_floats(size_t(k.c), seed + 7);
  }
  return in;
}

double sigmoid(double z) {
  return 1 / (1 + std::exp(-z));
}
double silu_grad(double z) {
  const double s = sigmoid(z);
  return s * (1 + z * (1 - s));
}

// ------------------------------------------------------------- the oracle

struct Want {
  std::vector<double> mean, rstd;                   // exact statistics
  std::vector<double> y, dx, dbias, dgamma, dbeta;  // on the kernel's statistics
  std::vector<double> tol_mean, tol_rstd, tol_y, tol_dx, tol_dbias, tol_dgamma, tol_dbeta;
};

// f64 GroupNorm on in's (bf16-exact) values; y and the gradients on the given
// statistics (the kernel's). Gradients from zero; the accumulating priors are
// added by the caller. Tolerances as derived at the top of the file.
Want reference(const Case& k, const Inputs& in, const std::vector<float>& kmean,
               const std::vector<float>& krstd) {
  const double u = kU;
  const double K = double(k.pixels() + 256 + k.c + k.n);
  const int64_t P = k.pixels(), C = k.c, cpg = k.c / k.g;
  const double count = double(P * cpg);
  const auto Cs = static_cast<size_t>(C);
  Want w;
  const size_t ng_count = size_t(k.n * k.g);
  w.mean.resize(ng_count), w.rstd.resize(ng_count), w.tol_mean.resize(ng_count),
      w.tol_rstd.resize(ng_count);
  w.y.resize(k.numel()), w.tol_y.resize(k.numel()), w.dx.resize(k.numel()),
      w.tol_dx.resize(k.numel());
  w.dbias.assign(k.bias ? size_t(k.n * C) : 0, 0.0), w.tol_dbias.assign(w.dbias.size(), 0.0);
  std::vector<double> s_t1(Cs), a_t1(Cs), e_t1(Cs), s_t2(Cs), a_t2(Cs), e_t2(Cs);
  auto at = [&](int64_t n, int64_t p, int64_t c) { return size_t((n * P + p) * C + c); };
  for (int64_t n = 0; n < k.n; ++n) {
    std::vector<double> s1(Cs), a1(Cs), e1(Cs), s3(Cs), a3(Cs), e3(Cs);
    for (int64_t g = 0; g < k.g; ++g) {
      const size_t ng = size_t(n * k.g + g);
      auto h_of = [&](int64_t p, int64_t c) {
        return double(in.x[at(n, p, c)]) + (k.bias ? double(in.bias[size_t(n * C + c)]) : 0.0);
      };
      // Exact statistics, two-pass in double.
      double sum = 0;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) sum += h_of(p, c);
      const double mean = sum / count;
      double m2 = 0, mean_h = 0, mean_d = 0, mean_dh = 0;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const double h = h_of(p, c), d = h - mean;
          m2 += d * d;
          mean_h += std::abs(h) / count, mean_d += std::abs(d) / count;
          mean_dh += std::abs(d) * std::abs(h) / count;
        }
      const double var = m2 / count;
      w.mean[ng] = mean;
      w.rstd[ng] = 1 / std::sqrt(var + double(kEps));
      w.tol_mean[ng] = 2 * ((k.bias ? u * mean_h : 0) + K * u * mean_d + 2 * u * std::abs(mean));
      w.tol_rstd[ng] =
          2 * ((K / 2 + 2) * u + (k.bias ? u * mean_dh / std::max(var, 1e-30) : 0)) * w.rstd[ng];

      // Forward and backward on the kernel's statistics.
      const double km = double(kmean[ng]), kr = double(krstd[ng]);
      std::vector<double> xhat(size_t(P * cpg)), dz(xhat.size()), ddz(xhat.size()), r(xhat.size());
      double sum_a = 0, abs_a = 0, err_a = 0, sum_b = 0, abs_b = 0, err_b = 0;
      for (int64_t p = 0; p < P; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const size_t i = at(n, p, c), j = size_t(p * cpg + c - g * cpg), ci = size_t(c);
          const double h = h_of(p, c);
          const double gamma = k.affine ? double(in.gamma[ci]) : 1.0;
          const double beta = k.affine ? double(in.beta[ci]) : 0.0;
          const double xh = (h - km) * kr, z = gamma * xh + beta;
          const double y = k.silu ? z * sigmoid(z) : z;
          r[j] = u * ((k.bias ? kr * std::abs(h) : 0) + 2 * std::abs(xh));
          const double ez = std::abs(gamma) * r[j] + 2 * u * std::abs(gamma * xh) + u * std::abs(z);
          w.y[i] = y;
          w.tol_y[i] = bf16_bound(y, 2 * (k.silu ? 1.1 * ez + 4 * u * std::abs(y) : ez));
          const double slope = k.silu ? silu_grad(z) : 1.0, dyv = double(in.dy[i]);
          const double dz_err = std::abs(gamma) * r[j] + 2 * u * std::abs(z);
          xhat[j] = xh;
          dz[j] = dyv * slope;
          ddz[j] = k.silu ? std::abs(dyv) * (0.5 * dz_err + 6 * u * std::abs(slope)) : 0.0;
          const double t2 = dz[j] * xh;
          const double dt2 = std::abs(dz[j]) * r[j] + std::abs(xh) * ddz[j] + u * std::abs(t2);
          sum_a += gamma * dz[j], abs_a += std::abs(gamma * dz[j]),
              err_a += std::abs(gamma) * ddz[j];
          sum_b += gamma * t2, abs_b += std::abs(gamma * t2), err_b += std::abs(gamma) * dt2;
          s1[ci] += dz[j], a1[ci] += std::abs(dz[j]), e1[ci] += ddz[j];
          s3[ci] += xh, a3[ci] += std::abs(xh), e3[ci] += r[j];
          s_t1[ci] += dz[j], a_t1[ci] += std::abs(dz[j]), e_t1[ci] += ddz[j];
          s_t2[ci] += t2, a_t2[ci] += std::abs(t2), e_t2[ci] += dt2;
        }
      const double A = sum_a / count, B = sum_b / count;
      const double dA = (K * u * abs_a + err_a) / count + u * std::abs(A);
      const double dB = (K * u * abs_b + err_b) / count + u * std::abs(B);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const size_t i = at(n, p, c), j = size_t(p * cpg + c - g * cpg);
          const double gamma = k.affine ? double(in.gamma[size_t(c)]) : 1.0;
          w.dx[i] = kr * (gamma * dz[j] - A - xhat[j] * B);
          w.tol_dx[i] =
              2 * kr *
              (std::abs(gamma) * ddz[j] + dA + std::abs(xhat[j]) * dB + std::abs(B) * r[j] +
               4 * u * (std::abs(gamma * dz[j]) + std::abs(A) + std::abs(xhat[j] * B)));
        }
      if (k.bias)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const size_t ci = size_t(c), o = size_t(n * C + c);
          const double gamma = k.affine ? double(in.gamma[ci]) : 1.0, ag = std::abs(gamma);
          const double dS1 = K * u * a1[ci] + e1[ci], dS3 = K * u * a3[ci] + e3[ci];
          w.dbias[o] = kr * (gamma * s1[ci] - double(P) * A - B * s3[ci]);
          w.tol_dbias[o] =
              2 * kr *
              (ag * dS1 + double(P) * dA + std::abs(B) * dS3 + std::abs(s3[ci]) * dB +
               4 * u * (ag * std::abs(s1[ci]) + double(P) * std::abs(A) + std::abs(B * s3[ci])));
        }
    }
  }
  if (k.affine) {
    w.dgamma = s_t2, w.dbeta = s_t1;
    w.tol_dgamma.resize(Cs), w.tol_dbeta.resize(Cs);
    for (size_t c = 0; c < Cs; ++c) {
      w.tol_dgamma[c] = 2 * (K * u * a_t2[c] + e_t2[c] + u * std::abs(s_t2[c]));
      w.tol_dbeta[c] = 2 * (K * u * a_t1[c] + e_t1[c] + u * std::abs(s_t1[c]));
    }
  }
  return w;
}

// want + prior, and the fp32 tolerance widened by the final addition's rounding.
void add_prior(std::vector<double>& want, std::vector<double>& tol,
               const std::vector<float>& prior) {
  for (size_t i = 0; i < want.size(); ++i) {
    want[i] += double(prior[i]);
    tol[i] += kU * (std::abs(want[i]) + 2 * std::abs(double(prior[i])));
  }
}

// ------------------------------------------------------------- the kernels

using Got = GroupNormResults;
using RunOptions = GroupNormRunOptions;

// Forward, then backward on the forward's own mean and rstd (group_norm_run.h).
Got run_kernels(const Case& k, const Inputs& in, const RunOptions& o) {
  const GroupNormShape s = k.shape();
  return run_group_norm<DeviceBf16, DeviceF32>(
      k, in, o, kernels::group_norm_bf16_workspace_bytes(s),
      [&](auto x, auto bias, auto gamma, auto beta, auto y, auto mean, auto rstd, auto work) {
        kernels::group_norm_forward_bf16(x, bias, gamma, beta, y, mean, rstd, s, kEps, k.silu, work,
                                         nullptr);
      },
      [&](auto x, auto bias, auto gamma, auto beta, auto mean, auto rstd, auto dy, auto dx,
          auto dbias, auto dgamma, auto dbeta, auto work) {
        kernels::group_norm_backward_bf16(x, bias, gamma, beta, mean, rstd, dy, dx, dbias, dgamma,
                                          dbeta, s, k.silu, o.accumulate, o.accumulate, work,
                                          nullptr);
      });
}

void check_case(const Case& k, const RunOptions& o, uint64_t seed) {
  SCOPED_TRACE(k.name() + (o.accumulate ? " accumulate" : " overwrite") +
               (o.offset ? " unaligned" : ""));
  const Inputs in = make_inputs(k, seed);
  const Got got = run_kernels(k, in, o);
  Want w = reference(k, in, got.mean, got.rstd);
  expect_within(got.mean, w.mean, w.tol_mean, "mean");
  expect_within(got.rstd, w.rstd, w.tol_rstd, "rstd");
  expect_within(got.y, w.y, w.tol_y, "y");
  if (o.want_dx) {
    if (o.accumulate) add_prior(w.dx, w.tol_dx, in.dx0);
    for (size_t i = 0; i < w.dx.size(); ++i) w.tol_dx[i] = bf16_bound(w.dx[i], w.tol_dx[i]);
    expect_within(got.dx, w.dx, w.tol_dx, "dx");
  } else {
    EXPECT_TRUE(got.dx.empty());
  }
  if (k.bias && o.want_dbias) {
    if (o.accumulate) add_prior(w.dbias, w.tol_dbias, in.dbias0);
    expect_within(got.dbias, w.dbias, w.tol_dbias, "dbias");
  }
  if (k.affine && o.want_dparams) {
    add_prior(w.dgamma, w.tol_dgamma, in.dparam0);  // always accumulate
    add_prior(w.dbeta, w.tol_dbeta, in.dparam0);
    expect_within(got.dgamma, w.dgamma, w.tol_dgamma, "dgamma");
    expect_within(got.dbeta, w.dbeta, w.tol_dbeta, "dbeta");
  }
}

// Tiny shapes (the emulator runs every thread): C % 8 == 0 (16-byte path) and
// not (scalar), one and several chunks per sample, groups of 1..8 channels,
// a large offset (the two-pass statistics), every fusion.
const std::vector<Case> kCases = {
    {2, 4, 4, 32, 8, true, true, true},         // vector path, everything fused
    {1, 3, 5, 24, 6, true, false, false},       // vector path, odd pixels
    {2, 3, 3, 12, 4, true, true, true},         // C % 8 != 0: scalar path
    {1, 5, 10, 12, 3, false, true, false},      // scalar, 3 chunks, no affine
    {1, 8, 8, 256, 32, true, true, false},      // vector, 8 chunks
    {1, 5, 5, 40, 5, true, true, false, 50.0},  // offset data
    {3, 1, 7, 9, 9, false, false, true},        // odd C, one channel per group
};

TEST(GroupNormBf16, MatchesTheF64Reference) {
  DDPM_REQUIRE_DEVICE();
  uint64_t seed = 100;
  for (const Case& k : kCases) check_case(k, RunOptions{}, seed += 10);
}

TEST(GroupNormBf16, AccumulatesIntoPriorGradients) {
  DDPM_REQUIRE_DEVICE();
  RunOptions o;
  o.accumulate = true;
  check_case(kCases[0], o, 7);
  check_case(kCases[2], o, 8);
}

// Offset 1 element (2 bytes): every big array misaligned, the scalar path for
// a C that would take the vector one.
TEST(GroupNormBf16, UnalignedPointersTakeTheScalarPath) {
  DDPM_REQUIRE_DEVICE();
  RunOptions o;
  o.offset = 1;
  check_case(kCases[0], o, 9);
  o.accumulate = true;
  check_case(kCases[4], o, 10);
}

TEST(GroupNormBf16, OptionalGradients) {
  DDPM_REQUIRE_DEVICE();
  RunOptions o;
  o.want_dx = false;
  check_case(kCases[0], o, 11);  // dbias and the parameter gradients alone
  o = RunOptions{};
  o.want_dbias = false, o.want_dparams = false;
  check_case(kCases[0], o, 12);  // dx alone
}

TEST(GroupNormBf16, BitwiseReproducible) {
  DDPM_REQUIRE_DEVICE();
  const Case& k = kCases[4];
  const Inputs in = make_inputs(k, 13);
  const Got a = run_kernels(k, in, RunOptions{}), b = run_kernels(k, in, RunOptions{});
  for (auto [p, q] : {std::pair{&a.y, &b.y},
                      {&a.mean, &b.mean},
                      {&a.rstd, &b.rstd},
                      {&a.dx, &b.dx},
                      {&a.dgamma, &b.dgamma},
                      {&a.dbeta, &b.dbeta}}) {
    ASSERT_EQ(p->size(), q->size());
    EXPECT_EQ(std::memcmp(p->data(), q->data(), p->size() * sizeof(float)), 0);
  }
}

TEST(GroupNormBf16, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceBf16 x(std::vector<float>(64, 1.0f), 0), y(64, 0);
  DeviceF32 mean(2, 0), rstd(2, 0), gamma(std::vector<float>(8, 1.0f), 0);
  DeviceArray<unsigned char> work(4096);
  auto fwd = [&](GroupNormShape s, const float* g, const float* b, float eps, void* ws) {
    kernels::group_norm_forward_bf16(x.get(), nullptr, g, b, y.get(), mean.get(), rstd.get(), s,
                                     eps, false, ws, nullptr);
  };
  const GroupNormShape ok{1, 8, 8, 2};
  EXPECT_NO_THROW(fwd(ok, nullptr, nullptr, kEps, work.get()));
  EXPECT_THROW(fwd({1, 8, 8, 3}, nullptr, nullptr, kEps, work.get()), std::invalid_argument);
  EXPECT_THROW(fwd({1, 8, 4096, 2}, nullptr, nullptr, kEps, work.get()), std::invalid_argument);
  EXPECT_THROW(fwd({1, 0, 8, 2}, nullptr, nullptr, kEps, work.get()), std::invalid_argument);
  EXPECT_THROW(fwd(ok, gamma.get(), nullptr, kEps, work.get()), std::invalid_argument);
  EXPECT_THROW(fwd(ok, nullptr, nullptr, 0.0f, work.get()), std::invalid_argument);
  EXPECT_THROW(fwd(ok, nullptr, nullptr, kEps, nullptr), std::invalid_argument);
  EXPECT_THROW(fwd(ok, nullptr, nullptr, kEps, work.get() + 2), std::invalid_argument);
  EXPECT_THROW(kernels::group_norm_backward_bf16(
                   x.get(), nullptr, nullptr, nullptr, mean.get(), rstd.get(), x.get(), y.get(),
                   nullptr, gamma.get(), nullptr, ok, false, false, false, work.get(), nullptr),
               std::invalid_argument);  // dgamma without gamma
  EXPECT_EQ(kernels::group_norm_bf16_workspace_bytes({0, 8, 8, 2}), 0u);
}

}  // namespace
}  // namespace ddpm::testing
