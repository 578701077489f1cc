// Kernel tests of attention.cuh against the CPU backend (see kernel_test_util.h).
//
// The oracle is the CPU backend's attention op run in f64 (testing::OpRun).
// Forward: o and lse against the oracle's forward. Backward: the oracle's
// backward is given the kernel's own o and lse as the saved outputs (as the
// engine would), so it checks the backward arithmetic alone; dq, dk, dv are
// checked in overwrite mode (NaN-poisoned buffers: an unwritten element
// fails), in accumulate mode (prefilled buffers), with 16-byte-misaligned
// tensors (the scalar path), and with some gradient pointers null.
//
// Shapes: T in {1, 3, 5, 9, 35 (5x7), 49 (7x7), 66, 130 (10x13: three query
// and key tiles of 64, so the online softmax rescales across tiles)}, heads 1
// and 2, head_dim 1, 5, 8 (bucket 16), 20 (32), 40, 64 (64), 100, 128 (128),
// 256 (two tiles of 32 at T 35), batch 1 and 3, a non-default scale, and scores of
// magnitude ~50-200 (exp would overflow fp32 without the running max). The
// GPU-only cases are the CIFAR-10 model's attention (T 256, 1 head of 256)
// and T 196 with 4 heads of 64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/attention.h"
#include "kernels/attention.cuh"
#include "tests/kernels/attention_case.h"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm {
namespace {

using kernels::AttentionShape;
using testing::DeviceArray;
using testing::expect_within;
using testing::OpRun;

constexpr double kU = 5.96e-8;  // unit roundoff of fp32, 2^-24

using Case = testing::AttentionTestCase;

// ------------------------------------------------------------- inputs, oracle

struct Inputs {
  std::vector<float> q, k, v, dout;
  std::vector<float> dq0, dk0, dv0;  // gradients' prior contents (accumulate mode)
};

Inputs make_inputs(const Case& c, uint64_t seed) {
  const size_t n = c.numel();
  Inputs in;
  in.q = testing::random_floats(n, seed, c.magnitude);
  in.k = testing::random_floats(n, seed + 1, c.magnitude);
  for (float& x : in.q) x = float(x + c.shift);
  for (float& x : in.k) x = float(x - c.shift);
  in.v = testing::random_floats(n, seed + 2);
  in.dout = testing::random_floats(n, seed + 3);
  in.dq0 = testing::random_floats(n, seed + 4);
  in.dk0 = testing::random_floats(n, seed + 5);
  in.dv0 = testing::random_floats(n, seed + 6);
  return in;
}

// The CPU op in f64: its forward, and its backward on the kernel's o and lse.
testing::AttentionOracle cpu_reference(const Case& c, const Inputs& in,
                                       const std::vector<float>& kernel_o,
                                       const std::vector<float>& kernel_lse) {
  using testing::to_double;
  return testing::attention_reference(c, to_double(in.q), to_double(in.k), to_double(in.v),
                                      to_double(in.dout), to_double(kernel_o),
                                      to_double(kernel_lse));
}

// ------------------------------------------------------------- tolerances
//
// First-order rounding-error bounds, evaluated per element in double from the
// inputs, then doubled (second-order terms). u = 2^-24; an fp32 sum whose
// terms each pass through at most K additions is off by at most K u
// sum|terms|; exp2f is within 2 ulp (CUDA's bound; the emulator's libm is
// within 1), log2f within 1. Per (sample, head), with exact s_ij = scale q_i.k_j,
// a_ij = scale sum_d |q_id k_jd|, M_i = max_j |s_ij|, P_ij the softmax:
//   score: one fp32 chain over head_dim D (zero padding adds nothing exactly),
//     then the multiply by fl(scale log2 e): D u a_ij + 2 u |s_ij|.
//   forward probability p = 2^(s - m) against the running max m: the
//     subtraction u (|s| + M), exp2 3 u; each of the K <= ceil(T / 16) key
//     tiles rescales by alpha = 2^(m_old - m_new), which adds 2 u M + 3 u and a
//     multiply (u). So p is relative e_ij = (D + 2) u a_ij + (4 + 2K) u M_i + (3 + 4K) u.
//   o = (sum_j p_ij v_jd) / l: the numerator's chain has T terms, l's partial
//     chains T plus a 5-step shuffle tree, then 1 / l and a multiply:
//     sum_j P_ij |v_jd| (e_ij + T u) + |o| (sum_j P_ij e_ij + (T + 7) u).
//   lse = (m + log2 l) ln 2: dl / l, log2f, the add and the multiply by ln 2:
//     sum_j P_ij e_ij + (T + 6) u + u |lse - m| + 3 u |lse|.
// Backward, on the kernel's lse (the oracle uses it too, so only its
// rounding to log2 units counts): P = 2^(s log2 e - lse log2 e) is relative
//   e'_ij = (D + 3) u a_ij + 2 u |lse_i| + 3 u; dP_ij = dO_i . V_j is within D u
//   b_ij (b = sum_d |dO V|); Drow_i = dO_i . O_i within (D + 5) u c_i (a lane
//   chain plus a shuffle tree; c = sum_d |dO O|); dS = P (dP - Drow) within
//   |dS| e' + P ((D + 1) u b + (D + 5) u c + u |dP - Drow|) + u |dS|. Then
//   dV = sum_i P_ij dO_i, dK = scale sum_i dS_ij Q_i, dQ = scale sum_j dS_ij K_j
//   are T-term chains: sum |terms| ((T + 1) u + their relative errors) + 2 u |result|.
// Accumulating outputs add u (|result| + 2 |prior|) for the final addition.
// Measured worst error / tolerance is recorded per output (test properties).
struct Tolerances {
  std::vector<double> o, lse, dq, dk, dv;
};

Tolerances tolerances(const Case& c, const Inputs& in, const std::vector<float>& kernel_o,
                      const std::vector<float>& kernel_lse) {
  const double u = kU, scale = c.effective_scale();
  const int64_t T = c.tokens(), D = c.dim, C = c.heads * c.dim;
  const double K = double((T + 15) / 16);
  Tolerances t;
  t.o.assign(c.numel(), 0);
  t.dq.assign(c.numel(), 0);
  t.dk.assign(c.numel(), 0);
  t.dv.assign(c.numel(), 0);
  t.lse.assign(c.lse_numel(), 0);
  const auto Tz = size_t(T);
  std::vector<double> s(Tz * Tz), a(Tz * Tz), p(Tz * Tz), e(Tz * Tz), pb(Tz * Tz), eb(Tz * Tz),
      ds(Tz * Tz), dds(Tz * Tz);
  for (int64_t n = 0; n < c.n; ++n)
    for (int64_t h = 0; h < c.heads; ++h) {
      auto at = [&](int64_t token, int64_t d) { return size_t((n * T + token) * C + h * D + d); };
      auto ij = [&](int64_t i, int64_t j) { return size_t(i * T + j); };
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
          double dot = 0, abs_dot = 0;
          for (int64_t d = 0; d < D; ++d) {
            const double x = double(in.q[at(i, d)]) * double(in.k[at(j, d)]);
            dot += x, abs_dot += std::abs(x);
          }
          s[ij(i, j)] = scale * dot, a[ij(i, j)] = scale * abs_dot;
        }
      for (int64_t i = 0; i < T; ++i) {
        const size_t lse_at = size_t((n * c.heads + h) * T + i);
        double mx = -INFINITY, big = 0, sum = 0;
        for (int64_t j = 0; j < T; ++j) mx = std::max(mx, s[ij(i, j)]);
        for (int64_t j = 0; j < T; ++j) big = std::max(big, std::abs(s[ij(i, j)]));
        for (int64_t j = 0; j < T; ++j) sum += std::exp(s[ij(i, j)] - mx);
        const double lse = mx + std::log(sum), klse = double(kernel_lse[lse_at]);
        double pe = 0;  // sum_j P e
        for (int64_t j = 0; j < T; ++j) {
          p[ij(i, j)] = std::exp(s[ij(i, j)] - lse);
          e[ij(i, j)] = (D + 2) * u * a[ij(i, j)] + (4 + 2 * K) * u * big + (3 + 4 * K) * u;
          pe += p[ij(i, j)] * e[ij(i, j)];
          // Backward's probabilities, from the kernel's lse.
          pb[ij(i, j)] = std::exp(s[ij(i, j)] - klse);
          eb[ij(i, j)] = (D + 3) * u * a[ij(i, j)] + 2 * u * std::abs(klse) + 3 * u;
        }
        t.lse[lse_at] = 2 * (pe + (T + 6) * u + u * std::abs(lse - mx) + 3 * u * std::abs(lse));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0, err = 0;
          for (int64_t j = 0; j < T; ++j) {
            const double pv = p[ij(i, j)] * double(in.v[at(j, d)]);
            o += pv;
            err += std::abs(pv) * (e[ij(i, j)] + T * u);
          }
          t.o[at(i, d)] = 2 * (err + std::abs(o) * (pe + (T + 7) * u));
        }
        // dS_ij and its error.
        double row_dot = 0, row_abs = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double x = double(in.dout[at(i, d)]) * double(kernel_o[at(i, d)]);
          row_dot += x, row_abs += std::abs(x);
        }
        for (int64_t j = 0; j < T; ++j) {
          double dp = 0, dp_abs = 0;
          for (int64_t d = 0; d < D; ++d) {
            const double x = double(in.dout[at(i, d)]) * double(in.v[at(j, d)]);
            dp += x, dp_abs += std::abs(x);
          }
          const double pij = pb[ij(i, j)];
          ds[ij(i, j)] = pij * (dp - row_dot);
          dds[ij(i, j)] =
              std::abs(ds[ij(i, j)]) * (eb[ij(i, j)] + u) +
              pij * ((D + 1) * u * dp_abs + (D + 5) * u * row_abs + u * std::abs(dp - row_dot));
        }
      }
      const double chain = (T + 1) * u;
      for (int64_t x = 0; x < T; ++x)
        for (int64_t d = 0; d < D; ++d) {
          double dv = 0, dv_err = 0, dk = 0, dk_err = 0, dq = 0, dq_err = 0;
          for (int64_t y = 0; y < T; ++y) {
            // dV_x and dK_x sum over queries y; dQ_x over keys y.
            const double pdo = pb[ij(y, x)] * double(in.dout[at(y, d)]);
            dv += pdo, dv_err += std::abs(pdo) * (eb[ij(y, x)] + chain);
            const double qd = double(in.q[at(y, d)]), kd = double(in.k[at(y, d)]);
            dk += ds[ij(y, x)] * qd;
            dk_err += (dds[ij(y, x)] + chain * std::abs(ds[ij(y, x)])) * std::abs(qd);
            dq += ds[ij(x, y)] * kd;
            dq_err += (dds[ij(x, y)] + chain * std::abs(ds[ij(x, y)])) * std::abs(kd);
          }
          t.dv[at(x, d)] = 2 * (dv_err + 2 * u * std::abs(dv));
          t.dk[at(x, d)] = 2 * (scale * dk_err + 2 * u * scale * std::abs(dk));
          t.dq[at(x, d)] = 2 * (scale * dq_err + 2 * u * scale * std::abs(dq));
        }
    }
  return t;
}

// want + prior, and the tolerance widened by the rounding of that addition.
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

// ------------------------------------------------------------- the kernels

// A float array `offset` floats into a poisoned allocation (offset 1: the
// scalar path); empty data gives a null pointer.
using DeviceFloats = testing::DeviceF32;

struct RunOptions {
  size_t offset = 0;  // floats: every tensor starts this far into its allocation
  bool accumulate = false;
  bool want_dq = true, want_dk = true, want_dv = true;
};

struct KernelResults {
  std::vector<float> o, lse, dq, dk, dv;
};

// Forward, then backward on the forward's own o and lse. The gradients are
// poisoned (overwrite) or hold in.d*0 (accumulate); unwanted ones are null.
KernelResults run_kernels(const Case& c, const Inputs& in, const RunOptions& r) {
  const AttentionShape s = c.shape();
  const auto scale = float(c.effective_scale());
  DeviceFloats q(in.q, r.offset), k(in.k, r.offset), v(in.v, r.offset), dout(in.dout, r.offset);
  DeviceFloats o(c.numel(), r.offset), lse(c.lse_numel(), 0);
  kernels::attention_forward(q.get(), k.get(), v.get(), o.get(), lse.get(), s, scale, nullptr);
  KernelResults got;
  got.o = o.download();
  got.lse = lse.download();

  auto grad = [&](bool want, const std::vector<float>& prior) {
    if (want && r.accumulate) return std::make_unique<DeviceFloats>(prior, r.offset);
    return std::make_unique<DeviceFloats>(want ? c.numel() : 0, r.offset);
  };
  const auto dq = grad(r.want_dq, in.dq0), dk = grad(r.want_dk, in.dk0),
             dv = grad(r.want_dv, in.dv0);
  DeviceArray<unsigned char> work(kernels::attention_workspace_bytes(s));  // poisoned
  kernels::attention_backward(q.get(), k.get(), v.get(), o.get(), lse.get(), dout.get(), dq->get(),
                              dk->get(), dv->get(), s, scale, r.accumulate, r.accumulate,
                              r.accumulate, work.get(), nullptr);
  got.dq = dq->download();
  got.dk = dk->download();
  got.dv = dv->download();
  return got;
}

void check_case(const Case& c, const RunOptions& r, uint64_t seed) {
  SCOPED_TRACE(case_name(c) + (r.accumulate ? " accumulate" : " overwrite") +
               (r.offset ? " unaligned" : ""));
  const Inputs in = make_inputs(c, seed);
  const KernelResults got = run_kernels(c, in, r);
  ASSERT_EQ(got.o.size(), c.numel());
  const testing::AttentionOracle want = cpu_reference(c, in, got.o, got.lse);
  const Tolerances tol = tolerances(c, in, got.o, got.lse);
  expect_within(got.o, want.o, tol.o, "o");
  expect_within(got.lse, want.lse, tol.lse, "lse");
  auto check_grad = [&](bool wanted, const std::vector<float>& g, const std::vector<double>& w,
                        const std::vector<double>& t, const std::vector<float>& prior,
                        const std::string& what) {
    if (!wanted) return;
    if (r.accumulate)
      expect_within(g, plus(w, prior), plus_rounding(t, w, prior), what);
    else
      expect_within(g, w, t, what);
  };
  check_grad(r.want_dq, got.dq, want.dq, tol.dq, in.dq0, "dq");
  check_grad(r.want_dk, got.dk, want.dk, tol.dk, in.dk0, "dk");
  check_grad(r.want_dv, got.dv, want.dv, tol.dv, in.dv0, "dv");
}

// ------------------------------------------------------------- the cases

const Case kCases[] = {
    {1, 1, 1, 1, 8},             // one token
    {3, 1, 3, 2, 5},             // odd head_dim: the scalar path
    {1, 5, 7, 2, 40},            // 5x7 map, two heads
    {3, 7, 7, 1, 64},            // 7x7, batch 3
    {1, 5, 7, 1, 1},             // head_dim 1
    {3, 5, 7, 2, 8, 0.3},        // a non-default scale
    {1, 3, 3, 2, 20},            // bucket 32
    {1, 5, 7, 1, 100},           // bucket 128: two key tiles of 32
    {1, 10, 13, 2, 8},           // three query and key tiles of 64
    {1, 10, 13, 1, 64},          // three tiles of 64 at bucket 64
    {1, 6, 11, 2, 128},          // T 66: 2 query tiles of 64, 3 key tiles of 32 at bucket 128
    {1, 5, 7, 1, 256},           // the CIFAR head size, few tokens: two tiles of 32
    {3, 1, 5, 1, 256},           // batch 3, T 5
    {1, 7, 7, 2, 40, 1.0, 3.0},  // scores ~50-200: exp overflows without the max
    // Every score near -130, lse too: exp(s) underflows without the max, and
    // the backward's 2^(s - lse) of the zero rows past T overflows (unread).
    {1, 5, 7, 1, 8, 1.0, 0.5, 4.0},
#if !DDPM_KERNEL_TESTS_EMULATED
    {2, 16, 16, 1, 256},  // the CIFAR-10 model's attention at 16x16
    {4, 16, 16, 1, 256},
    {3, 14, 14, 4, 64},  // T 196, 4 heads of 64
#endif
};

class AttentionCase : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionCase, OverwriteMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{}, 11);
}

TEST_P(AttentionCase, AccumulateMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{.accumulate = true}, 12);
}

// Every tensor one float past 16-byte alignment: the scalar path for D % 4 == 0.
TEST_P(AttentionCase, UnalignedMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{.offset = 1, .accumulate = true}, 13);
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionCase, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return case_name(i.param);
                         });

// Any gradient may be left out (null): its kernel is skipped or its store is.
TEST(AttentionKernel, PartialGradients) {
  DDPM_REQUIRE_DEVICE();
  const Case c{3, 5, 7, 2, 8};
  check_case(c, RunOptions{.want_dk = false, .want_dv = false}, 21);
  check_case(c, RunOptions{.accumulate = true, .want_dq = false}, 22);
  check_case(c, RunOptions{.want_dq = false, .want_dk = false}, 23);
  check_case(c, RunOptions{.want_dq = false, .want_dv = false}, 24);
  // No gradient at all: nothing is read, not even the workspace.
  const AttentionShape s = c.shape();
  EXPECT_NO_THROW(kernels::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, nullptr, nullptr, s, 0.5f, false, false,
                                              false, nullptr, nullptr));
}

// q, k and v as the column blocks of one packed [N, T, 3C] tensor (rows
// qkv_stride apart; here 3C + 4, so that a write past a block would land in
// the 4 guard columns): the same arithmetic as on separate tensors, so
// bitwise the results of run_kernels, with dq, dk, dv written into the
// packed gradient in place (overwrite and accumulate) and the guard columns
// untouched. Odd head_dim covers the scalar path.
void check_packed(const Case& c, bool accumulate, uint64_t seed) {
  SCOPED_TRACE(case_name(c) + (accumulate ? " packed accumulate" : " packed overwrite"));
  const Inputs in = make_inputs(c, seed);
  const KernelResults want = run_kernels(c, in, RunOptions{.accumulate = accumulate});
  const int64_t C = c.heads * c.dim, stride = 3 * C + 4, rows = c.n * c.tokens();
  auto pack = [&](const std::vector<float>& q, const std::vector<float>& k,
                  const std::vector<float>& v, float guard) {
    std::vector<float> p(size_t(rows * stride), guard);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < C; ++e) {
        p[size_t(r * stride + e)] = q[size_t(r * C + e)];
        p[size_t(r * stride + C + e)] = k[size_t(r * C + e)];
        p[size_t(r * stride + 2 * C + e)] = v[size_t(r * C + e)];
      }
    return p;
  };
  auto block = [&](const std::vector<float>& p, int part) {
    std::vector<float> out(size_t(rows * C));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < C; ++e) out[size_t(r * C + e)] = p[size_t(r * stride + part * C + e)];
    return out;
  };
  AttentionShape s = c.shape();
  s.qkv_stride = stride;
  const auto scale = float(c.effective_scale());
  const DeviceArray<float> qkv(pack(in.q, in.k, in.v, 7.0f)), dout(in.dout);
  DeviceArray<float> o(c.numel()), lse(c.lse_numel());
  const float* base = qkv.get();
  kernels::attention_forward(base, base + C, base + 2 * C, o.get(), lse.get(), s, scale, nullptr);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  DeviceArray<float> dqkv(accumulate ? pack(in.dq0, in.dk0, in.dv0, 7.0f)
                                     : pack(std::vector<float>(c.numel(), nan),
                                            std::vector<float>(c.numel(), nan),
                                            std::vector<float>(c.numel(), nan), 7.0f));
  DeviceArray<unsigned char> work(kernels::attention_workspace_bytes(s));
  float* g = dqkv.get();
  kernels::attention_backward(base, base + C, base + 2 * C, o.get(), lse.get(), dout.get(), g,
                              g + C, g + 2 * C, s, scale, accumulate, accumulate, accumulate,
                              work.get(), nullptr);
  EXPECT_EQ(o.download(), want.o);
  EXPECT_EQ(lse.download(), want.lse);
  const std::vector<float> grads = dqkv.download();
  EXPECT_EQ(block(grads, 0), want.dq);
  EXPECT_EQ(block(grads, 1), want.dk);
  EXPECT_EQ(block(grads, 2), want.dv);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 3 * C; e < stride; ++e)
      ASSERT_EQ(grads[size_t(r * stride + e)], 7.0f) << "guard column written, row " << r;
}

TEST(AttentionKernel, PackedQkvEqualsSeparateTensors) {
  DDPM_REQUIRE_DEVICE();
  for (const Case& c : {Case{3, 5, 7, 2, 8}, Case{1, 10, 13, 1, 64}, Case{2, 1, 3, 2, 5}})
    for (bool accumulate : {false, true}) check_packed(c, accumulate, 41);
  // A stride below heads * head_dim is refused.
  AttentionShape s{1, 4, 2, 8};
  s.qkv_stride = 15;
  EXPECT_THROW(kernels::validate(s), std::invalid_argument);
  s.qkv_stride = 48;
  EXPECT_NO_THROW(kernels::validate(s));
}

// No atomics, fixed summation orders: two runs give bitwise the same outputs
// (the emulator schedules blocks on several workers in no fixed order).
TEST(AttentionKernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  const Case c{1, 10, 13, 2, 8};
  const Inputs in = make_inputs(c, 31);
  const KernelResults a = run_kernels(c, in, {}), b = run_kernels(c, in, {});
  auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(a.o, b.o) && same(a.lse, b.lse));
  EXPECT_TRUE(same(a.dq, b.dq) && same(a.dk, b.dk) && same(a.dv, b.dv));
}

TEST(AttentionKernel, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> buf(4096);
  float* p = buf.get();
  auto forward = [&](AttentionShape s, float scale = 0.5f) {
    kernels::attention_forward(p, p, p, p, p, s, scale, nullptr);
  };
  testing::expect_rejects_bad_shapes(forward, "attention_forward");
  EXPECT_THROW(kernels::validate({1, 4, 1, 0}), std::invalid_argument);
  EXPECT_NO_THROW(kernels::validate({0, 196, 4, 64}));
  EXPECT_THROW(kernels::attention_workspace_bytes({1, 0, 1, 8}), std::invalid_argument);
  EXPECT_EQ(kernels::attention_workspace_bytes({0, 4, 1, 8}), 0u);
  EXPECT_GE(kernels::attention_workspace_bytes({3, 35, 2, 8}), 3u * 35 * 2 * sizeof(float));
  // The backward needs its workspace, and the forward's tensors.
  EXPECT_THROW(kernels::attention_backward(p, p, p, p, p, p, p, p, p, {1, 4, 1, 8}, 0.5f, false,
                                           false, false, nullptr, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::attention_backward(p, p, nullptr, p, p, p, p, p, p, {1, 4, 1, 8}, 0.5f,
                                           false, false, false, p, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::attention_forward(p, p, p, nullptr, p, {1, 4, 1, 8}, 0.5f, nullptr),
               std::invalid_argument);
  // Batch 0: nothing to do, no pointer touched.
  EXPECT_NO_THROW(kernels::attention_forward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                             {0, 4, 1, 8}, 0.5f, nullptr));
  EXPECT_NO_THROW(kernels::attention_backward(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              nullptr, nullptr, nullptr, {0, 4, 1, 8}, 0.5f, true,
                                              true, true, nullptr, nullptr));
}

}  // namespace
}  // namespace ddpm
