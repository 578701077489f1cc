// Kernel tests of attention_bf16.cuh against the CPU backend (see kernel_test_util.h).
//
// Inputs are drawn in fp32 and rounded to bf16; the oracle is the CPU
// backend's attention op in f64 on exactly those values (testing::OpRun).
// Forward: o (bf16) and lse (fp32) against the oracle's forward. Backward: the
// oracle's backward is given the kernel's own o and lse as the saved outputs
// (as the engine would), so it checks the backward's arithmetic; dq, dk, dv
// are checked in overwrite mode (NaN-poisoned buffers: an unwritten element
// fails), in accumulate mode (prefilled bf16 buffers), with tensors one
// element past 16-byte alignment (the scalar staging path), and with some
// gradient pointers null. The bound of each element is derived below.
//
// Shapes: T in {1, 7, 35, 49, 65 (two query tiles of 64; 2-5 key tiles)},
// heads 1 and 2, batch 1 and 2, head_dim 32, 64, 128, 256 (the buckets), 40
// (bucket 64 with zero columns), 5 (the scalar path), a non-default scale,
// scores of magnitude ~50-200 (exp overflows without the running max) and all
// near -130 (underflows). GPU-only: the CIFAR-10 model's attention (T 256, one
// head of 256) and T 196 with 4 heads of 64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/attention.h"
#include "kernels/attention_bf16.cuh"
#include "tests/kernels/attention_case.h"
#include "tests/kernels/bf16_host.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm {
namespace {

using kernels::AttentionShape;
using testing::DeviceArray;
using testing::expect_within;
using testing::from_bf16;
using testing::OpRun;
using testing::to_bf16;
using Bits = std::vector<uint16_t>;  // bf16 values as their bits

constexpr double kU = 0x1p-24;  // fp32 unit roundoff
constexpr double kUb = 0x1p-8;  // bf16 unit roundoff (8 significant bits, round to nearest)
constexpr double kSecondOrder = 1.0625;  // covers products of first-order terms (<= 2^-7 of them)

std::vector<double> widen(const Bits& b) {
  std::vector<double> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = double(from_bf16(b[i]));
  return v;
}

using Case = testing::AttentionTestCase;

// ------------------------------------------------------------- inputs, oracle

struct Inputs {
  Bits q, k, v, dout;
  Bits dq0, dk0, dv0;  // gradients' prior contents (accumulate mode)
};

Bits random_bf16(size_t n, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  const std::vector<float> f = testing::random_floats(n, seed, scale);
  Bits b(n);
  for (size_t i = 0; i < n; ++i) b[i] = to_bf16(float(f[i] + shift));
  return b;
}

Inputs make_inputs(const Case& c, uint64_t seed) {
  const size_t n = c.numel();
  return {random_bf16(n, seed, c.magnitude, c.shift),
          random_bf16(n, seed + 1, c.magnitude, -c.shift),
          random_bf16(n, seed + 2),
          random_bf16(n, seed + 3),
          random_bf16(n, seed + 4),
          random_bf16(n, seed + 5),
          random_bf16(n, seed + 6)};
}

// The CPU op in f64: its forward, and its backward on the kernel's o and lse.
testing::AttentionOracle cpu_reference(const Case& c, const Inputs& in, const Bits& kernel_o,
                                       const std::vector<float>& kernel_lse) {
  return testing::attention_reference(c, widen(in.q), widen(in.k), widen(in.v), widen(in.dout),
                                      widen(kernel_o), testing::to_double(kernel_lse));
}

// ------------------------------------------------------------- tolerances
//
// First-order rounding-error bounds, per element, evaluated in double from the
// inputs; the final bound is kSecondOrder x (error before the output's
// rounding + that rounding). Units: u = 2^-24 (fp32), ub = 2^-8 (bf16). Every
// fp32 sum is charged 2u per addition (not u: the tensor core's fp32
// accumulation need not round to nearest); products of two bf16 values are
// exact in fp32. exp2f is within 2 ulp (4u relative), log2f 1 ulp. Per
// (sample, head), with exact s_ij = scale q_i.k_j, a_ij = scale sum_d |q_id
// k_jd|, M_i = max_j |s_ij|, P_ij the exact softmax, K = ceil(T / 16) >= the
// number of key tiles:
//   fp32 part of the forward probability p_ij (the fp32 kernel's analysis at
//     2u a step): the score chain over D and the scaling, the subtraction of
//     the running max, exp2, and K rescalings by alpha:
//     e_ij = 2 [(D + 2) u a_ij + (4 + 2K) u M_i + (3 + 4K) u] (relative).
//   o_id = bf16(sum_j bf16(p_ij) v_jd / l_i): P rounded to bf16 (relative ub
//     per entry: the derivation's main term), the T-term chain, l's chain
//     (fp32 P, T terms + 2 shuffles), 1 / l and the multiply, then the output
//     rounding:
//     ub sum_j P_ij |v_jd| + sum_j P_ij |v_jd| (e_ij + 2Tu)
//       + |o_id| (sum_j P_ij e_ij + 2(T + 7) u)   [+ ub |o_id| at the output].
//   lse = (m + log2 l) ln 2, fp32 only: 2 (sum_j P_ij e_ij + 2(T + 6) u +
//     u |lse - m| + 3 u |lse|).
// Backward, on the kernel's lse and o (the oracle uses both): P'_ij =
//   2^(s log2 e - lse log2 e) relative eb_ij = 2 [(D + 3) u a_ij + 2 u |lse_i| +
//   3 u]; dP_ij = dO_i.V_j within 2 D u b_ij (b = sum_d |dO V|); D_i = dO_i.o_i
//   within 2 (D + 3) u c_i (c = sum_d |dO o|: 8-lane chains and a 3-step tree);
//   dS = P (dP - D) within dds = |dS| (eb + u) + P (2 D u b + 2 (D + 3) u c +
//   u |dP - D|). The products round P and dS to bf16 (ub relative) and sum T
//   terms in fp32 (2Tu):
//   dV_jd = sum_i bf16(P_ij) dO_id:      sum_i P_ij |dO_id| (ub + eb_ij + 2Tu)
//   dK_jd = scale sum_i bf16(dS_ij) Q_id: scale sum_i (|dS_ij| (ub + 2Tu) + dds_ij) |Q_id| + u|dK|
//   dQ_id = scale sum_j bf16(dS_ij) K_jd: likewise,
//   [+ ub |result| at the output]. Accumulating outputs round prior + result
//   once: u + ub of |prior + result| instead.
// Measured worst error / bound is recorded per output (test properties).
struct Tolerances {
  std::vector<double> o, lse, dq, dk, dv;  // o, dq, dk, dv before the output rounding
};

Tolerances tolerances(const Case& c, const Inputs& in, const Bits& kernel_o_bits,
                      const std::vector<float>& kernel_lse) {
  const double u = kU, ub = kUb, scale = c.effective_scale();
  const int64_t T = c.tokens(), D = c.dim, C = c.heads * c.dim;
  const double K = double((T + 15) / 16);
  const std::vector<double> q = widen(in.q), k = widen(in.k), v = widen(in.v),
                            dout = widen(in.dout), kernel_o = widen(kernel_o_bits);
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
            const double x = q[at(i, d)] * k[at(j, d)];
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
          e[ij(i, j)] = 2 * ((D + 2) * u * a[ij(i, j)] + (4 + 2 * K) * u * big + (3 + 4 * K) * u);
          pe += p[ij(i, j)] * e[ij(i, j)];
          pb[ij(i, j)] = std::exp(s[ij(i, j)] - klse);
          eb[ij(i, j)] = 2 * ((D + 3) * u * a[ij(i, j)] + 2 * u * std::abs(klse) + 3 * u);
        }
        t.lse[lse_at] = kSecondOrder * 2 *
                        (pe + 2 * (T + 6) * u + u * std::abs(lse - mx) + 3 * u * std::abs(lse));
        for (int64_t d = 0; d < D; ++d) {
          double o = 0, err = 0;
          for (int64_t j = 0; j < T; ++j) {
            const double pv = p[ij(i, j)] * v[at(j, d)];
            o += pv;
            err += std::abs(pv) * (ub + e[ij(i, j)] + 2 * T * u);
          }
          t.o[at(i, d)] = err + std::abs(o) * (pe + 2 * (T + 7) * u);
        }
        double row_dot = 0, row_abs = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double x = dout[at(i, d)] * kernel_o[at(i, d)];
          row_dot += x, row_abs += std::abs(x);
        }
        for (int64_t j = 0; j < T; ++j) {
          double dp = 0, dp_abs = 0;
          for (int64_t d = 0; d < D; ++d) {
            const double x = dout[at(i, d)] * v[at(j, d)];
            dp += x, dp_abs += std::abs(x);
          }
          const double pij = pb[ij(i, j)];
          ds[ij(i, j)] = pij * (dp - row_dot);
          dds[ij(i, j)] =
              std::abs(ds[ij(i, j)]) * (eb[ij(i, j)] + u) +
              pij * (2 * D * u * dp_abs + 2 * (D + 3) * u * row_abs + u * std::abs(dp - row_dot));
        }
      }
      const double chain = 2 * T * u;
      for (int64_t x = 0; x < T; ++x)
        for (int64_t d = 0; d < D; ++d) {
          double dv_err = 0, dk = 0, dk_err = 0, dq = 0, dq_err = 0;
          for (int64_t y = 0; y < T; ++y) {
            // dV_x and dK_x sum over queries y; dQ_x over keys y.
            dv_err += pb[ij(y, x)] * std::abs(dout[at(y, d)]) * (ub + eb[ij(y, x)] + chain);
            const double qd = q[at(y, d)], kd = k[at(y, d)];
            dk += ds[ij(y, x)] * qd;
            dk_err += (std::abs(ds[ij(y, x)]) * (ub + chain) + dds[ij(y, x)]) * std::abs(qd);
            dq += ds[ij(x, y)] * kd;
            dq_err += (std::abs(ds[ij(x, y)]) * (ub + chain) + dds[ij(x, y)]) * std::abs(kd);
          }
          t.dv[at(x, d)] = dv_err;
          t.dk[at(x, d)] = scale * dk_err + u * scale * std::abs(dk);
          t.dq[at(x, d)] = scale * dq_err + u * scale * std::abs(dq);
        }
    }
  return t;
}

// A bf16 output against want (+ prior): the bound adds the output's single rounding.
void expect_bf16_within(const Bits& got, std::vector<double> want, std::vector<double> pre,
                        const Bits* prior, const std::string& what) {
  if (prior) {
    for (size_t i = 0; i < want.size(); ++i) want[i] += double(from_bf16((*prior)[i]));
  }
  for (size_t i = 0; i < pre.size(); ++i)
    pre[i] = kSecondOrder * (pre[i] + (kUb + (prior ? kU : 0.0)) * std::abs(want[i]));
  expect_within(widen(got), want, pre, what);
}

// ------------------------------------------------------------- the kernels

// A bf16 array on the device starting `offset` elements into its allocation
// (offset 1 breaks 16-byte alignment: the scalar path). Size 0 gives a null
// pointer; without data the array is poisoned (0xFFFF: NaN).
class DeviceBf16 {
 public:
  DeviceBf16(size_t n, size_t offset) : mem_(n ? n + offset : 0), offset_(offset), n_(n) {}
  DeviceBf16(const Bits& host, size_t offset) : DeviceBf16(host.size(), offset) {
    if (n_ == 0) return;
    Bits padded(offset_, to_bf16(0.5f));
    padded.insert(padded.end(), host.begin(), host.end());
    mem_.upload(padded);
  }
  __nv_bfloat16* get() const {
    return n_ ? reinterpret_cast<__nv_bfloat16*>(mem_.get() + offset_) : nullptr;
  }
  Bits download() const {
    if (n_ == 0) return {};
    const Bits all = mem_.download();
    return {all.begin() + std::ptrdiff_t(offset_), all.end()};
  }

 private:
  DeviceArray<uint16_t> mem_;
  size_t offset_, n_;
};

struct RunOptions {
  size_t offset = 0;  // elements: every bf16 tensor starts this far into its allocation
  bool accumulate = false;
  bool want_dq = true, want_dk = true, want_dv = true;
};

struct KernelResults {
  Bits o, dq, dk, dv;
  std::vector<float> lse;
};

// Forward, then backward on the forward's own o and lse. The gradients are
// poisoned (overwrite) or hold in.d*0 (accumulate); unwanted ones are null.
KernelResults run_kernels(const Case& c, const Inputs& in, const RunOptions& r) {
  const AttentionShape s = c.shape();
  const auto scale = float(c.effective_scale());
  DeviceBf16 q(in.q, r.offset), k(in.k, r.offset), v(in.v, r.offset), dout(in.dout, r.offset);
  DeviceBf16 o(c.numel(), r.offset);
  DeviceArray<float> lse(c.lse_numel());
  kernels::attention_bf16_forward(q.get(), k.get(), v.get(), o.get(), lse.get(), s, scale, nullptr);
  KernelResults got;
  got.o = o.download();
  got.lse = lse.download();

  auto grad = [&](bool want, const Bits& prior) {
    if (want && r.accumulate) return std::make_unique<DeviceBf16>(prior, r.offset);
    return std::make_unique<DeviceBf16>(want ? c.numel() : 0, r.offset);
  };
  const auto dq = grad(r.want_dq, in.dq0), dk = grad(r.want_dk, in.dk0),
             dv = grad(r.want_dv, in.dv0);
  DeviceArray<unsigned char> work(kernels::attention_bf16_workspace_bytes(s));  // poisoned
  kernels::attention_bf16_backward(q.get(), k.get(), v.get(), o.get(), lse.get(), dout.get(),
                                   dq->get(), dk->get(), dv->get(), s, scale, r.accumulate,
                                   r.accumulate, r.accumulate, work.get(), nullptr);
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
  expect_bf16_within(got.o, want.o, tol.o, nullptr, "o");
  expect_within(std::vector<double>(got.lse.begin(), got.lse.end()), want.lse, tol.lse, "lse");
  auto check_grad = [&](bool wanted, const Bits& g, const std::vector<double>& w,
                        const std::vector<double>& t, const Bits& prior, const std::string& what) {
    if (wanted) expect_bf16_within(g, w, t, r.accumulate ? &prior : nullptr, what);
  };
  check_grad(r.want_dq, got.dq, want.dq, tol.dq, in.dq0, "dq");
  check_grad(r.want_dk, got.dk, want.dk, tol.dk, in.dk0, "dk");
  check_grad(r.want_dv, got.dv, want.dv, tol.dv, in.dv0, "dv");
}

// ------------------------------------------------------------- the cases

// TSan looks for shared-memory races, which do not depend on the shape; under
// it the emulator is 20-40x slower than the plain build, so it runs
// kRaceCases: every kernel instantiation (the four head-dim buckets of the
// three kernels, the vector and the scalar staging) once, at T 33 for 256 so
// the backward's double buffers are refilled (3 tiles of 16), plus
// ForwardLongSequence (3 key tiles at 256: the forward's). Plain and ASan
// run everything.
#if defined(__SANITIZE_THREAD__)
constexpr bool kRaceCheckOnly = true;
#else
constexpr bool kRaceCheckOnly = false;
#endif

#define DDPM_SKIP_UNDER_TSAN() \
  if (kRaceCheckOnly) GTEST_SKIP() << "arithmetic only: not rerun under TSan (see kRaceCases)"

const Case kCases[] = {
    {2, 1, 1, 2, 64},            // one token, batch 2, two heads
    {2, 1, 7, 2, 32},            // T 7, bucket 32
    {2, 7, 7, 1, 64},            // 7x7, batch 2
    {1, 5, 13, 1, 128},          // T 65: two query tiles, 3 key tiles of 32 in the backward
    {1, 5, 13, 1, 256},          // T 65 at 256: key tiles of 32 (forward) and 16 (backward)
    {1, 5, 7, 2, 40},            // head_dim 40: bucket 64, 24 zero columns
    {2, 1, 7, 1, 5},             // odd head_dim: the scalar path
    {1, 5, 7, 2, 32, 0.3},       // a non-default scale
    {1, 7, 7, 2, 40, 1.0, 3.0},  // scores ~50-200: exp overflows without the max
    // Every score near -130: exp(s) underflows without the max; the dQ
    // kernel's 2^(0 - lse) for the zero key rows past T would overflow.
    {1, 5, 7, 1, 32, 1.0, 0.5, 4.0},
#if !DDPM_KERNEL_TESTS_EMULATED
    {2, 16, 16, 1, 256},  // the CIFAR-10 model's attention at 16x16
    {3, 14, 14, 4, 64},   // T 196, 4 heads of 64
    {2, 16, 16, 2, 128},
#endif
};

const Case kRaceCases[] = {
    {1, 1, 7, 2, 32}, {1, 1, 7, 1, 5}, {1, 1, 3, 1, 64}, {1, 1, 3, 1, 128}, {1, 3, 11, 1, 256},
};

// Accumulate and unaligned runs: fewer shapes (each run is a forward and a backward).
const Case kModeCases[] = {
    {2, 1, 7, 2, 32},
    {1, 5, 13, 1, 64},
    {1, 1, 7, 1, 256},
};

class AttentionBf16Case : public ::testing::TestWithParam<Case> {};
class AttentionBf16Mode : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionBf16Case, OverwriteMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  check_case(GetParam(), RunOptions{}, 11);
}

TEST_P(AttentionBf16Mode, AccumulateMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  DDPM_SKIP_UNDER_TSAN();
  check_case(GetParam(), RunOptions{.accumulate = true}, 12);
}

// Every bf16 tensor one element past 16-byte alignment: the scalar path.
TEST_P(AttentionBf16Mode, UnalignedMatchesCpu) {
  DDPM_REQUIRE_DEVICE();
  DDPM_SKIP_UNDER_TSAN();
  check_case(GetParam(), RunOptions{.offset = 1, .accumulate = true}, 13);
}

auto name_of = [](const ::testing::TestParamInfo<Case>& i) { return case_name(i.param); };
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionBf16Case,
                         kRaceCheckOnly ? ::testing::ValuesIn(kRaceCases)
                                        : ::testing::ValuesIn(kCases),
                         name_of);
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionBf16Mode, ::testing::ValuesIn(kModeCases), name_of);

// The forward alone at T 65, head_dim 256: 3 key tiles of 32, so each K/V
// stage is refilled while the other is read (the race check of the
// forward's pipeline under TSan), and 2 query tiles.
TEST(AttentionBf16Kernel, ForwardLongSequence) {
  DDPM_REQUIRE_DEVICE();
  const Case c{1, 5, 13, 1, 256};
  const Inputs in = make_inputs(c, 51);
  DeviceBf16 q(in.q, 0), k(in.k, 0), v(in.v, 0), o(c.numel(), 0);
  DeviceArray<float> lse(c.lse_numel());
  kernels::attention_bf16_forward(q.get(), k.get(), v.get(), o.get(), lse.get(), c.shape(),
                                  float(c.effective_scale()), nullptr);
  const Bits got_o = o.download();
  const std::vector<float> got_lse = lse.download();
  const testing::AttentionOracle want = cpu_reference(c, in, got_o, got_lse);
  const Tolerances tol = tolerances(c, in, got_o, got_lse);
  expect_bf16_within(got_o, want.o, tol.o, nullptr, "o");
  expect_within(std::vector<double>(got_lse.begin(), got_lse.end()), want.lse, tol.lse, "lse");
}

// Any gradient may be left out (null): its kernel is skipped or its store is.
TEST(AttentionBf16Kernel, PartialGradients) {
  DDPM_REQUIRE_DEVICE();
  DDPM_SKIP_UNDER_TSAN();
  const Case c{2, 1, 7, 2, 32};
  check_case(c, RunOptions{.want_dk = false, .want_dv = false}, 21);
  check_case(c, RunOptions{.accumulate = true, .want_dq = false}, 22);
  check_case(c, RunOptions{.want_dq = false, .want_dk = false}, 23);
  check_case(c, RunOptions{.want_dq = false, .want_dv = false}, 24);
  const AttentionShape s = c.shape();
  EXPECT_NO_THROW(kernels::attention_bf16_backward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                                   nullptr, nullptr, nullptr, nullptr, s, 0.5f,
                                                   false, false, false, nullptr, nullptr));
}

// q, k and v as the column blocks of one packed [N, T, 3C] tensor (rows
// qkv_stride = 3C + 8 apart, so a write past a block lands in the 8 guard
// columns): bitwise the results on separate tensors, with dq, dk, dv written
// into the packed gradient in place and the guard columns untouched.
void check_packed(const Case& c, bool accumulate, uint64_t seed) {
  SCOPED_TRACE(case_name(c) + (accumulate ? " packed accumulate" : " packed overwrite"));
  const Inputs in = make_inputs(c, seed);
  const KernelResults want = run_kernels(c, in, RunOptions{.accumulate = accumulate});
  const int64_t C = c.heads * c.dim, stride = 3 * C + 8, rows = c.n * c.tokens();
  const uint16_t guard = to_bf16(7.0f);
  auto pack = [&](const Bits& q, const Bits& k, const Bits& v) {
    Bits p(size_t(rows * stride), guard);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < C; ++e) {
        p[size_t(r * stride + e)] = q[size_t(r * C + e)];
        p[size_t(r * stride + C + e)] = k[size_t(r * C + e)];
        p[size_t(r * stride + 2 * C + e)] = v[size_t(r * C + e)];
      }
    return p;
  };
  auto block = [&](const Bits& p, int part) {
    Bits out(size_t(rows * C));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < C; ++e) out[size_t(r * C + e)] = p[size_t(r * stride + part * C + e)];
    return out;
  };
  AttentionShape s = c.shape();
  s.qkv_stride = stride;
  const auto scale = float(c.effective_scale());
  const DeviceArray<uint16_t> qkv(pack(in.q, in.k, in.v)), dout(in.dout);
  DeviceArray<uint16_t> o(c.numel());
  DeviceArray<float> lse(c.lse_numel());
  const auto* base = reinterpret_cast<const __nv_bfloat16*>(qkv.get());
  kernels::attention_bf16_forward(base, base + C, base + 2 * C,
                                  reinterpret_cast<__nv_bfloat16*>(o.get()), lse.get(), s, scale,
                                  nullptr);
  const Bits nan(c.numel(), 0xFFFF);
  DeviceArray<uint16_t> dqkv(accumulate ? pack(in.dq0, in.dk0, in.dv0) : pack(nan, nan, nan));
  DeviceArray<unsigned char> work(kernels::attention_bf16_workspace_bytes(s));
  auto* g = reinterpret_cast<__nv_bfloat16*>(dqkv.get());
  kernels::attention_bf16_backward(
      base, base + C, base + 2 * C, reinterpret_cast<const __nv_bfloat16*>(o.get()), lse.get(),
      reinterpret_cast<const __nv_bfloat16*>(dout.get()), g, g + C, g + 2 * C, s, scale, accumulate,
      accumulate, accumulate, work.get(), nullptr);
  EXPECT_EQ(o.download(), want.o);
  EXPECT_EQ(lse.download(), want.lse);
  const Bits grads = dqkv.download();
  EXPECT_EQ(block(grads, 0), want.dq);
  EXPECT_EQ(block(grads, 1), want.dk);
  EXPECT_EQ(block(grads, 2), want.dv);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 3 * C; e < stride; ++e)
      ASSERT_EQ(grads[size_t(r * stride + e)], guard) << "guard column written, row " << r;
}

TEST(AttentionBf16Kernel, PackedQkvEqualsSeparateTensors) {
  DDPM_REQUIRE_DEVICE();
  DDPM_SKIP_UNDER_TSAN();
  for (const Case& c : {Case{2, 1, 7, 2, 32}, Case{1, 1, 9, 1, 64}})
    for (bool accumulate : {false, true}) check_packed(c, accumulate, 41);
  AttentionShape s{1, 4, 2, 8};
  s.qkv_stride = 15;
  EXPECT_THROW(kernels::attention_bf16_validate(s), std::invalid_argument);
  s.qkv_stride = 48;
  EXPECT_NO_THROW(kernels::attention_bf16_validate(s));
}

// No atomics, fixed summation orders: two runs give bitwise the same outputs
// (the emulator schedules blocks on several workers in no fixed order).
TEST(AttentionBf16Kernel, Deterministic) {
  DDPM_REQUIRE_DEVICE();
  DDPM_SKIP_UNDER_TSAN();
  const Case c{2, 1, 7, 2, 32};  // 4 slices: blocks on several emulator workers
  const Inputs in = make_inputs(c, 31);
  const KernelResults a = run_kernels(c, in, {}), b = run_kernels(c, in, {});
  EXPECT_EQ(a.o, b.o);
  EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)));
  EXPECT_EQ(a.dq, b.dq);
  EXPECT_EQ(a.dk, b.dk);
  EXPECT_EQ(a.dv, b.dv);
}

TEST(AttentionBf16Kernel, RejectsBadArguments) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<uint16_t> buf(4096);
  DeviceArray<float> fbuf(1024);
  auto* p = reinterpret_cast<__nv_bfloat16*>(buf.get());
  float* f = fbuf.get();
  auto forward = [&](AttentionShape s, float scale = 0.5f) {
    kernels::attention_bf16_forward(p, p, p, p, f, s, scale, nullptr);
  };
  testing::expect_rejects_bad_shapes(forward, "attention_bf16_forward");
  // A bf16 tensor must be 2-byte aligned.
  auto* odd = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<char*>(buf.get()) + 1);
  EXPECT_THROW(kernels::attention_bf16_forward(p, odd, p, p, f, {1, 4, 1, 8}, 0.5f, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::attention_bf16_validate({1, 4, 1, 0}), std::invalid_argument);
  EXPECT_NO_THROW(kernels::attention_bf16_validate({0, 196, 4, 64}));
  EXPECT_THROW(kernels::attention_bf16_workspace_bytes({1, 0, 1, 8}), std::invalid_argument);
  EXPECT_EQ(kernels::attention_bf16_workspace_bytes({0, 4, 1, 8}), 0u);
  EXPECT_GE(kernels::attention_bf16_workspace_bytes({3, 35, 2, 8}), 3u * 35 * 2 * sizeof(float));
  EXPECT_THROW(kernels::attention_bf16_backward(p, p, p, p, f, p, p, p, p, {1, 4, 1, 8}, 0.5f,
                                                false, false, false, nullptr, nullptr),
               std::invalid_argument);  // no workspace
  EXPECT_THROW(kernels::attention_bf16_backward(p, p, nullptr, p, f, p, p, p, p, {1, 4, 1, 8}, 0.5f,
                                                false, false, false, f, nullptr),
               std::invalid_argument);
  EXPECT_THROW(kernels::attention_bf16_forward(p, p, p, nullptr, f, {1, 4, 1, 8}, 0.5f, nullptr),
               std::invalid_argument);
  EXPECT_NO_THROW(kernels::attention_bf16_forward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                                  {0, 4, 1, 8}, 0.5f, nullptr));
  EXPECT_NO_THROW(kernels::attention_bf16_backward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                                   nullptr, nullptr, nullptr, nullptr, {0, 4, 1, 8},
                                                   0.5f, true, true, true, nullptr, nullptr));
}

}  // namespace
}  // namespace ddpm
