// Kernel tests of group_norm.cuh against the CPU backend (see kernel_test_util.h).
//
// The oracle is the CPU backend's group_norm op (statistics in double), with
// the fused add composed from its add op ([N, C] broadcast) where a case has
// a bias; dbias is the add's db. Each case runs the oracle in f64 (the truth
// the tolerances are derived against, below) and in f32 (the CPU's own fp32
// answer, with the bound widened by that oracle's own rounding).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/elementwise.h"
#include "engine/ops/group_norm.h"
#include "kernels/group_norm.cuh"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/group_norm_run.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm {
namespace {

using kernels::GroupNormShape;
using testing::DeviceArray;
using testing::expect_within;
using testing::OpRun;

constexpr double kU = 5.96e-8;  // unit roundoff of fp32, 2^-24
constexpr float kEps = 1e-5f;

using Case = testing::GroupNormTestCase;

std::string case_name(const Case& k) {
  return k.name();
}

// ------------------------------------------------------------- inputs, oracle

// Fresh N(0, 1) draws (x shifted by the case's offset); prefills for the
// accumulating gradients.
struct Inputs {
  std::vector<float> x, bias, gamma, beta, dy;
  std::vector<float> dx0, dbias0, dparam0;  // gradients' prior contents
};

Inputs make_inputs(const Case& k, uint64_t seed) {
  Inputs in;
  in.x = testing::random_floats(k.numel(), seed);
  for (float& v : in.x) v = float(v + k.offset);
  in.dy = testing::random_floats(k.numel(), seed + 1);
  in.dx0 = testing::random_floats(k.numel(), seed + 2);
  if (k.bias) {
    in.bias = testing::random_floats(size_t(k.n * k.c), seed + 3);
    in.dbias0 = testing::random_floats(size_t(k.n * k.c), seed + 4);
  }
  if (k.affine) {
    in.gamma = testing::random_floats(size_t(k.c), seed + 5);
    in.beta = testing::random_floats(size_t(k.c), seed + 6);
    in.dparam0 = testing::random_floats(size_t(k.c), seed + 7);
  }
  return in;
}

struct Results {
  std::vector<double> y, mean, rstd, dx, dbias, dgamma, dbeta;
};

void set_all(testing::HostTensor& t, const std::vector<float>& v) {
  for (size_t i = 0; i < v.size(); ++i) t.set(int64_t(i), double(v[i]));
}

std::vector<double> get_all(const testing::HostTensor& t) {
  std::vector<double> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get(int64_t(i));
  return v;
}

// The CPU backend: [add (broadcast [N, C]) ->] group_norm, forward and
// backward (gradients from zero). The backward runs on `stats` (the kernel's
// own mean and rstd, which the kernel's backward uses) when given, so it
// checks the backward arithmetic alone.
Results cpu_reference(const Case& k, const Inputs& in, DType dtype,
                      const std::vector<float>* stats_mean = nullptr,
                      const std::vector<float>* stats_rstd = nullptr) {
  const Shape xs{k.n, k.h, k.w, k.c};
  std::optional<OpRun> add;
  if (k.bias) {
    add.emplace(AddParams{}, std::vector<Shape>{xs, Shape{k.n, k.c}}, dtype);
    set_all(add->inputs[0], in.x);
    set_all(add->inputs[1], in.bias);
    add->forward();
  }
  std::vector<Shape> shapes{xs};
  if (k.affine) shapes.insert(shapes.end(), {Shape{k.c}, Shape{k.c}});
  OpRun gn(GroupNormParams{k.g, double(kEps), k.affine, k.silu}, shapes, dtype);
  if (add)
    gn.inputs[0] = add->outputs[0];  // h as the add op rounded it
  else
    set_all(gn.inputs[0], in.x);
  if (k.affine) {
    set_all(gn.inputs[1], in.gamma);
    set_all(gn.inputs[2], in.beta);
  }
  Results r;
  r.y = gn.forward(0);
  r.mean = get_all(gn.outputs[1]);
  r.rstd = get_all(gn.outputs[2]);
  if (stats_mean) set_all(gn.outputs[1], *stats_mean);
  if (stats_rstd) set_all(gn.outputs[2], *stats_rstd);
  const auto grads = gn.backward({testing::to_double(in.dy), {}, {}});
  r.dx = grads[0];
  if (k.affine) r.dgamma = grads[1], r.dbeta = grads[2];
  if (add) {
    const auto add_grads = add->backward({r.dx});
    r.dx = add_grads[0];
    r.dbias = add_grads[1];
  }
  return r;
}

// ------------------------------------------------------------- tolerances
//
// First-order rounding-error bounds, evaluated per element in double from the
// inputs, then doubled (second-order terms, and slack in the bounds on SiLU's
// derivatives). u = 2^-24; every fp32 operation adds at most u relative; a
// sum whose terms each pass through at most K fp32 additions is off by at
// most K u sum|terms| (plus the terms' own errors).
//
// K: the kernels' chains are a thread's rows + the TY row-threads + a group's
// channels + chunks + batch; in these cases <= 32 + 85 + 32 + 128 + 8 = 285,
// and K = 448 leaves room for a retuned pixel cut.
// The f32 CPU oracle sums dgamma over pixels, then samples, in one fp32 chain:
// K = pixels + batch + 8 for it, and its bound is added to the kernel's.
//
// Statistics (per group; d = h - mean, var = 1 / rstd^2 - eps):
//   mean: u mean|h| (h = x + bias rounded; no bias: 0) + K u mean|d| (the sums
//         of deviations in the two-pass) + 2 u |mean| (the fp32 chunk means
//         and the stored mean). Only the first and last terms grow with the
//         offset of the data; they are the rounding of fp32 values of that size.
//   rstd: relative (K/2 + 2) u from the sum of squares (halved by the sqrt)
//         + u mean(|d| |h|) / var from the rounded h (bias only): no term
//         grows with the offset but the inherent one.
// Forward, per element: xhat = (h - mean) rstd carries its own rounding
//   r_i = u (rstd |h| [bias] + 2 |xhat|) plus rstd dmean + |xhat| drstd/rstd;
//   z = xhat (rstd gamma) + beta adds 2 u |gamma xhat| + u |z|; SiLU's slope
//   <= 1.1 and it adds 4 u |y| (expf within 2 ulp, a divide, a multiply).
// Backward (on the kernel's own statistics, so no statistics error): with
//   t1 = dz, t2 = dz xhat, t3 = xhat and their errors (dz = dy SiLU'(z):
//   |SiLU''| <= 0.5, SiLU' to 6 u):
//   A = sum_g gamma t1 / count, B = sum_g gamma t2 / count: K u sum|gamma t| + sum|gamma| dt;
//   dx = rstd (gamma dz - A - xhat B): rstd (|gamma| ddz + dA + |xhat| dB + |B| r_i) + 4 u |terms|;
//   dbias = rstd (gamma S1 - P A - B S3) from channel sums S over pixels;
//   dgamma, dbeta: the sums of t2, t1 over (batch, pixels).
// Accumulating outputs add u (|prior| + |result|) for the final addition.
struct Tolerances {
  std::vector<double> y, mean, rstd, dx, dbias, dgamma, dbeta;
};

double silu_grad(double z) {
  const double s = 1 / (1 + std::exp(-z));
  return s * (1 + z * (1 - s));
}

Tolerances tolerances(const Case& k, const Inputs& in, const Results& ref, double chain) {
  const double u = kU, K = chain;
  const int64_t pixels = k.pixels(), cpg = k.c / k.g;
  const double count = double(pixels * cpg);
  Tolerances t;
  t.y.resize(k.numel());
  t.dx.resize(k.numel());
  t.mean.resize(ref.mean.size());
  t.rstd.resize(ref.rstd.size());
  t.dbias.assign(size_t(k.bias ? k.n * k.c : 0), 0.0);
  std::vector<double> abs_t1(size_t(k.c)), err_t1(size_t(k.c)), abs_t2(size_t(k.c)),
      err_t2(size_t(k.c)), sum_t2(size_t(k.c)), sum_t1(size_t(k.c));
  for (int64_t n = 0; n < k.n; ++n) {
    // Per channel of this sample: sums over pixels of t1, t3 and their errors.
    std::vector<double> s1(size_t(k.c)), a1(size_t(k.c)), e1(size_t(k.c)), s3(size_t(k.c)),
        a3(size_t(k.c)), e3(size_t(k.c));
    for (int64_t g = 0; g < k.g; ++g) {
      const auto ng = size_t(n * k.g + g);
      const double mean = ref.mean[ng], rstd = ref.rstd[ng];
      const double var = std::max(1 / (rstd * rstd) - double(kEps), 1e-30);
      auto at = [&](int64_t p, int64_t c) { return size_t((n * pixels + p) * k.c + c); };
      auto h_of = [&](int64_t p, int64_t c) {
        return double(in.x[at(p, c)]) + (k.bias ? double(in.bias[size_t(n * k.c + c)]) : 0.0);
      };
      double mean_h = 0, mean_d = 0, mean_dh = 0;
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const double h = h_of(p, c);
          mean_h += std::abs(h) / count;
          mean_d += std::abs(h - mean) / count;
          mean_dh += std::abs(h - mean) * std::abs(h) / count;
        }
      const double dmean = (k.bias ? u * mean_h : 0) + K * u * mean_d + 2 * u * std::abs(mean);
      const double drel = (K / 2 + 2) * u + (k.bias ? u * mean_dh / var : 0);
      t.mean[ng] = 2 * dmean;
      t.rstd[ng] = 2 * drel * rstd;

      // Group sums behind A and B, and the per-element pieces.
      double abs_a = 0, err_a = 0, sum_a = 0, abs_b = 0, err_b = 0, sum_b = 0;
      std::vector<double> r_i(size_t(pixels * cpg)), ddz(r_i.size()), dz(r_i.size()),
          xhat(r_i.size());
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const size_t i = at(p, c), j = size_t(p * cpg + c - g * cpg);
          const double h = h_of(p, c), gamma = k.affine ? double(in.gamma[size_t(c)]) : 1.0;
          const double beta = k.affine ? double(in.beta[size_t(c)]) : 0.0;
          const double xh = (h - mean) * rstd, z = gamma * xh + beta;
          r_i[j] = u * ((k.bias ? rstd * std::abs(h) : 0) + 2 * std::abs(xh));
          // Forward.
          const double dxh = rstd * dmean + std::abs(xh) * drel + r_i[j];
          const double dzf = std::abs(gamma) * dxh + 2 * u * std::abs(gamma * xh) + u * std::abs(z);
          t.y[i] = 2 * (k.silu ? 1.1 * dzf + 4 * u * std::abs(z / (1 + std::exp(-z))) : dzf);
          // Backward terms.
          const double slope = k.silu ? silu_grad(z) : 1.0;
          const double dy = double(in.dy[i]);
          const double dz_err = std::abs(gamma) * r_i[j] + 2 * u * std::abs(z);
          xhat[j] = xh;
          dz[j] = dy * slope;
          ddz[j] = k.silu ? std::abs(dy) * (0.5 * dz_err + 6 * u * std::abs(slope)) : 0.0;
          const double t2 = dz[j] * xh;
          const double dt2 = std::abs(dz[j]) * r_i[j] + std::abs(xh) * ddz[j] + u * std::abs(t2);
          abs_a += std::abs(gamma * dz[j]), err_a += std::abs(gamma) * ddz[j];
          sum_a += gamma * dz[j];
          abs_b += std::abs(gamma * t2), err_b += std::abs(gamma) * dt2, sum_b += gamma * t2;
          const auto ci = size_t(c);
          s1[ci] += dz[j], a1[ci] += std::abs(dz[j]), e1[ci] += ddz[j];
          s3[ci] += xh, a3[ci] += std::abs(xh), e3[ci] += r_i[j];
          abs_t1[ci] += std::abs(dz[j]), err_t1[ci] += ddz[j], sum_t1[ci] += dz[j];
          abs_t2[ci] += std::abs(t2), err_t2[ci] += dt2, sum_t2[ci] += t2;
        }
      const double A = sum_a / count, B = sum_b / count;
      const double dA = (K * u * abs_a + err_a) / count + u * std::abs(A);
      const double dB = (K * u * abs_b + err_b) / count + u * std::abs(B);
      for (int64_t p = 0; p < pixels; ++p)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const size_t i = at(p, c), j = size_t(p * cpg + c - g * cpg);
          const double gamma = k.affine ? std::abs(in.gamma[size_t(c)]) : 1.0;
          t.dx[i] = 2 * rstd *
                    (gamma * ddz[j] + dA + std::abs(xhat[j]) * dB + std::abs(B) * r_i[j] +
                     4 * u * (gamma * std::abs(dz[j]) + std::abs(A) + std::abs(xhat[j] * B)));
        }
      if (k.bias)
        for (int64_t c = g * cpg; c < (g + 1) * cpg; ++c) {
          const auto ci = size_t(c);
          const double gamma = k.affine ? std::abs(in.gamma[ci]) : 1.0;
          const double dS1 = K * u * a1[ci] + e1[ci], dS3 = K * u * a3[ci] + e3[ci];
          const double P = double(pixels);
          t.dbias[size_t(n * k.c + c)] =
              2 * rstd *
              (gamma * dS1 + P * dA + std::abs(B) * dS3 + std::abs(s3[ci]) * dB +
               4 * u * (gamma * std::abs(s1[ci]) + P * std::abs(A) + std::abs(B * s3[ci])));
        }
    }
  }
  if (k.affine) {
    t.dgamma.resize(size_t(k.c));
    t.dbeta.resize(size_t(k.c));
    for (size_t c = 0; c < size_t(k.c); ++c) {
      t.dgamma[c] = 2 * (K * u * abs_t2[c] + err_t2[c] + u * std::abs(sum_t2[c]));
      t.dbeta[c] = 2 * (K * u * abs_t1[c] + err_t1[c] + u * std::abs(sum_t1[c]));
    }
  }
  return t;
}

void add_to(std::vector<double>& a, const std::vector<double>& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] += b[i];
}

// ------------------------------------------------------------- the kernels

// A float array `offset` floats into a poisoned allocation (offset 1: the
// scalar path); empty data gives a null pointer.
using DeviceFloats = testing::DeviceF32;

using KernelResults = testing::GroupNormResults;
using RunOptions = testing::GroupNormRunOptions;

// Forward, then backward on the forward's own mean and rstd (group_norm_run.h).
KernelResults run_kernels(const Case& k, const Inputs& in, const RunOptions& o) {
  const GroupNormShape s = k.shape();
  return testing::run_group_norm<DeviceFloats, DeviceFloats>(
      k, in, o, kernels::group_norm_workspace_bytes(s),
      [&](auto x, auto bias, auto gamma, auto beta, auto y, auto mean, auto rstd, auto work) {
        kernels::group_norm_forward(x, bias, gamma, beta, y, mean, rstd, s, kEps, k.silu, work,
                                    nullptr);
      },
      [&](auto x, auto bias, auto gamma, auto beta, auto mean, auto rstd, auto dy, auto dx,
          auto dbias, auto dgamma, auto dbeta, auto work) {
        kernels::group_norm_backward(x, bias, gamma, beta, mean, rstd, dy, dx, dbias, dgamma, dbeta,
                                     s, k.silu, o.accumulate, o.accumulate, work, nullptr);
      });
}

// want + prior (the gradient buffer's prior contents), and the tolerance
// widened by the rounding of that final addition.
std::vector<double> plus(const std::vector<double>& want, const std::vector<float>& prior) {
  std::vector<double> v = want;
  for (size_t i = 0; i < v.size(); ++i) v[i] += double(prior[i]);
  return v;
}

std::vector<double> plus_rounding(std::vector<double> tol, const std::vector<double>& want,
                                  const std::vector<float>& prior) {
  for (size_t i = 0; i < tol.size(); ++i)
    tol[i] += kU * (std::abs(want[i]) + 2 * std::abs(double(prior[i])));
  return tol;
}

// The kernels' longest fp32 addition chain in these cases (see the notes above).
constexpr double kKernelChain = 448;

// Checks every output of one run against the oracle in f64 and in f32.
void check_case(const Case& k, const RunOptions& o, uint64_t seed) {
  SCOPED_TRACE(case_name(k) + (o.accumulate ? " accumulate" : " overwrite") +
               (o.offset ? " unaligned" : ""));
  const Inputs in = make_inputs(k, seed);
  const KernelResults got = run_kernels(k, in, o);
  const Results want64 = cpu_reference(k, in, DType::f64, &got.mean, &got.rstd);
  const Results want32 = cpu_reference(k, in, DType::f32, &got.mean, &got.rstd);
  const Tolerances tol = tolerances(k, in, want64, kKernelChain);
  Tolerances tol32 = tolerances(k, in, want64, double(k.pixels() + k.n + 8));
  add_to(tol32.y, tol.y);
  add_to(tol32.mean, tol.mean);
  add_to(tol32.rstd, tol.rstd);
  add_to(tol32.dx, tol.dx);
  add_to(tol32.dbias, tol.dbias);
  add_to(tol32.dgamma, tol.dgamma);
  add_to(tol32.dbeta, tol.dbeta);

  auto check = [&](const Results& want, const Tolerances& t, const std::string& tag) {
    const std::string w = " vs CPU " + tag;
    expect_within(got.y, want.y, t.y, "y" + w);
    expect_within(got.mean, want.mean, t.mean, "mean" + w);
    expect_within(got.rstd, want.rstd, t.rstd, "rstd" + w);
    if (o.want_dx) {
      if (o.accumulate)
        expect_within(got.dx, plus(want.dx, in.dx0), plus_rounding(t.dx, want.dx, in.dx0),
                      "dx" + w);
      else
        expect_within(got.dx, want.dx, t.dx, "dx" + w);
    }
    if (o.want_dbias && k.bias) {
      if (o.accumulate)
        expect_within(got.dbias, plus(want.dbias, in.dbias0),
                      plus_rounding(t.dbias, want.dbias, in.dbias0), "dbias" + w);
      else
        expect_within(got.dbias, want.dbias, t.dbias, "dbias" + w);
    }
    if (o.want_dparams && k.affine) {
      expect_within(got.dgamma, plus(want.dgamma, in.dparam0),
                    plus_rounding(t.dgamma, want.dgamma, in.dparam0), "dgamma" + w);
      expect_within(got.dbeta, plus(want.dbeta, in.dparam0),
                    plus_rounding(t.dbeta, want.dbeta, in.dparam0), "dbeta" + w);
    }
  };
  check(want64, tol, "f64");
  check(want32, tol32, "f32");
}

// ------------------------------------------------------------- the cases

// Channels 3, 5 (1 group), 40 (8 groups: float4 vectors straddle groups),
// 64 (2 groups; 32 groups: two channels a group), 256 (32 groups, the UNet's
// 16x16 level), 128 (32 groups, the top level at 32x32); odd maps (5x7),
// batch 1 and 3; affine/SiLU/bias on and off.
const Case kCases[] = {
    {3, 5, 7, 3, 1, true, true, false},
    {1, 5, 7, 5, 1, false, false, true},
    {3, 4, 4, 40, 8, true, false, true},
    {1, 4, 4, 64, 2, true, true, false},
    {3, 5, 7, 64, 32, false, true, true},
    {1, 16, 16, 256, 32, true, true, true},
    {3, 4, 4, 256, 32, true, false, false},
    {3, 5, 7, 40, 8, true, true, true, 100.0},
    {1, 16, 16, 256, 32, false, false, false, 100.0},
#if !DDPM_KERNEL_TESTS_EMULATED
    {8, 32, 32, 128, 32, true, true, true},
    {4, 8, 8, 512, 32, true, true, true},
    {2, 64, 64, 64, 32, true, false, true},
#endif
    {1, 32, 32, 128, 32, true, true, true},
};

class GroupNormCase : public ::testing::TestWithParam<Case> {};

TEST_P(GroupNormCase, OverwriteMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{}, 11);
}

TEST_P(GroupNormCase, AccumulateMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{.accumulate = true}, 12);
}

// x, y, dy, dx one float past 16-byte alignment: the scalar path for C % 4 == 0.
TEST_P(GroupNormCase, UnalignedMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{.offset = 1, .accumulate = true}, 13);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GroupNormCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return case_name(i.param);
                         });

// Any gradient may be left out: parameters only, or dx / dbias only.
TEST(GroupNormKernel, PartialGradients) {
  DDPM_REQUIRE_DEVICE();
  const Case k{3, 5, 7, 40, 8, true, true, true};
  check_case(k, RunOptions{.want_dx = false, .want_dbias = false}, 21);
  check_case(k, RunOptions{.want_dparams = false}, 22);
  check_case(k, RunOptions{.want_dx = false, .want_dparams = false}, 23);
}

// Fixed reduction order: two runs give bitwise the same outputs (the
// emulator schedules blocks on several workers in no fixed order).
TEST(GroupNormKernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  const Case k{1, 16, 16, 256, 32, true, true, true};
  const Inputs in = make_inputs(k, 31);
  const KernelResults a = run_kernels(k, in, {}), b = run_kernels(k, in, {});
  auto same = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(a.y, b.y) && same(a.mean, b.mean) && same(a.rstd, b.rstd));
  EXPECT_TRUE(same(a.dx, b.dx) && same(a.dbias, b.dbias));
  EXPECT_TRUE(same(a.dgamma, b.dgamma) && same(a.dbeta, b.dbeta));
}

TEST(GroupNormKernel, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  auto forward = [](GroupNormShape s, bool affine_pair = true) {
    DeviceArray<float> buf(64);
    float* p = buf.get();
    kernels::group_norm_forward(p, nullptr, p, affine_pair ? p : nullptr, p, p, p, s, kEps, false,
                                p, nullptr);
  };
  EXPECT_THROW(forward({1, 4, 6, 4}), std::invalid_argument);         // 6 channels, 4 groups
  EXPECT_THROW(forward({1, 4, 4096, 32}), std::invalid_argument);     // too many channels
  EXPECT_THROW(forward({1, 0, 4, 1}), std::invalid_argument);         // no pixels
  EXPECT_THROW(forward({1, 2, 4, 1}, false), std::invalid_argument);  // gamma without beta
  try {
    forward({1, 4, 6, 4});
    ADD_FAILURE() << "group_norm_forward accepted 6 channels in 4 groups";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("group_norm_forward"), std::string::npos) << e.what();
  }
  {
    DeviceArray<float> buf(64);
    float* p = buf.get();
    // dgamma without gamma (no affine), and SiLU with gamma but no beta.
    EXPECT_THROW(
        kernels::group_norm_backward(p, nullptr, nullptr, nullptr, p, p, p, p, nullptr, p, nullptr,
                                     {1, 2, 4, 1}, false, false, false, p, nullptr),
        std::invalid_argument);
    EXPECT_THROW(
        kernels::group_norm_backward(p, nullptr, p, nullptr, p, p, p, p, nullptr, nullptr, nullptr,
                                     {1, 2, 4, 1}, true, false, false, p, nullptr),
        std::invalid_argument);
  }
  EXPECT_THROW(kernels::group_norm_workspace_bytes({-1, 4, 4, 1}), std::invalid_argument);
  EXPECT_EQ(kernels::group_norm_workspace_bytes({0, 4, 4, 1}), 0u);
  // Batch 0: nothing to do, no pointer touched.
  EXPECT_NO_THROW(kernels::group_norm_forward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, {0, 4, 4, 1}, kEps, true, nullptr, nullptr));
  EXPECT_NO_THROW(kernels::group_norm_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                               nullptr, nullptr, nullptr, nullptr, nullptr,
                                               {0, 4, 4, 1}, true, false, false, nullptr, nullptr));
}

}  // namespace
}  // namespace ddpm
