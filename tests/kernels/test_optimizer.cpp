// Kernel tests of optimizer.cuh against the CPU backend (see kernel_test_util.h):
// grad_norm against cpu::global_norm, adamw_ema_step over several steps against
// cpu::adamw_step + cpu::ema_update with the trainer's warmup and clipping.
// u = 2^-24 (float's unit roundoff) in every tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/cpu/optimizer.h"
#include "kernels/optimizer.cuh"
#include "tests/kernels/kernel_test_util.h"

namespace ddpm::testing {
namespace {

namespace k = ddpm::kernels;

constexpr double kU = 0x1p-24;

// Odd sizes: float4 body + a tail of 3 (aligned) or all scalar (offset 1).
#if DDPM_KERNEL_TESTS_EMULATED
const std::vector<int64_t> kNormSizes = {1, 3, 4, 4099, 20001};
constexpr int64_t kAdamN = 4099;
#else
const std::vector<int64_t> kNormSizes = {1, 3, 4, 4099, 1000003};
constexpr int64_t kAdamN = 1000003;
#endif

using Slice = GuardedSlice<float>;

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The largest error / tolerance seen, recorded in the test's XML output: how
// much of each derived bound a device actually uses.
struct Margin {
  const char* name;
  double worst = 0;
  void add(double got, double want, double tol) {
    if (tol > 0) worst = std::max(worst, std::abs(got - want) / tol);
  }
  ~Margin() { ::testing::Test::RecordProperty(name, sci(worst)); }
};

float download_one(const float* p) {
  float v = 0;
  cudaDeviceSynchronize();
  EXPECT_EQ(cudaMemcpy(&v, p, sizeof v, cudaMemcpyDeviceToHost), cudaSuccess);
  return v;
}

// ---- grad_norm --------------------------------------------------------------------

// Both sides sum exact double squares; the summation errors are <= n 2^-53
// relative each, and the kernel rounds the sqrt to float (u / 2 relative):
// rtol = u + 2 n 2^-53.
TEST(GradNorm, MatchesTheCpuGlobalNormBitwiseReproducibly) {
  DDPM_REQUIRE_DEVICE();
  Margin margin{"worst_error_over_tolerance"};
  for (int64_t n : kNormSizes)
    for (size_t offset : {size_t(0), size_t(1)}) {
      SCOPED_TRACE("n " + std::to_string(n) + (offset ? " misaligned" : ""));
      const std::vector<float> g = random_floats(size_t(n), uint64_t(n) + offset, 0.3);
      Slice grad(size_t(n), offset);
      grad.upload(g);
      const size_t ws = k::grad_norm_workspace_bytes(n);
      ASSERT_GE(ws, sizeof(double));
      DeviceArray<double> workspace(ws / sizeof(double));
      DeviceArray<float> norm(1);
      k::grad_norm(grad.get(), n, norm.get(), workspace.get(), nullptr);
      const float got = download_one(norm.get());
      const double want = cpu::global_norm(g.data(), n);
      EXPECT_NEAR(got, want, want * (kU + 2 * double(n) * 0x1p-53));
      margin.add(got, want, want * (kU + 2 * double(n) * 0x1p-53));
      grad.download();  // the guards
      workspace.poison();
      norm.poison();
      k::grad_norm(grad.get(), n, norm.get(), workspace.get(), nullptr);
      const float again = download_one(norm.get());
      EXPECT_EQ(std::memcmp(&got, &again, sizeof got), 0) << got << " then " << again;
    }
}

TEST(GradNorm, EmptyAndBadInputs) {
  DDPM_REQUIRE_DEVICE();
  DeviceArray<float> norm(1);
  EXPECT_EQ(k::grad_norm_workspace_bytes(0), 0u);
  k::grad_norm(nullptr, 0, norm.get(), nullptr, nullptr);
  EXPECT_EQ(download_one(norm.get()), 0.0f);
  EXPECT_THROW(k::grad_norm(norm.get(), -1, norm.get(), nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(k::grad_norm(norm.get(), 1, norm.get(), nullptr, nullptr), std::invalid_argument);
  EXPECT_THROW(k::grad_norm_workspace_bytes(-2), std::invalid_argument);
}

// ---- adamw_ema_step ---------------------------------------------------------------

struct AdamCase {
  std::string name;
  k::AdamWEmaConfig config;
  bool ema;
  size_t offset;
};

// lr 1e-3 (updates far above float rounding), weight decay on, warmup over the
// first 4 of 6 steps; clip_norm between the norms of the odd steps' gradients
// (scale 1: clipped) and the even steps' (scale 0.1: not clipped).
std::vector<AdamCase> adam_cases() {
  k::AdamWEmaConfig base;
  base.lr = 1e-3;
  base.weight_decay = 0.01;
  base.warmup_steps = 4;
  base.ema.decay = 0.99;  // diffusers' default warmup: decays 0, 2/11, 3/12, ...
  base.clip_norm = float(0.5 * std::sqrt(double(kAdamN)));
  k::AdamWEmaConfig power = base;  // copies for 2 steps, then the floor, then the power curve
  power.ema.warmup = EmaWarmup::power;
  power.ema.inv_gamma = 0.5;
  power.ema.power = 0.75;
  power.ema.update_after_step = 2;
  power.ema.min_decay = 0.6;
  k::AdamWEmaConfig constant = base;  // the paper's constant decay from the first step
  constant.ema.warmup = EmaWarmup::none;
  k::AdamWEmaConfig no_clip = base;
  no_clip.clip_norm = 0;
  no_clip.warmup_steps = 0;
  return {{"clip+ema", base, true, 0},
          {"clip+ema misaligned", base, true, 1},
          {"clip+ema power warmup", power, true, 0},
          {"clip+ema constant decay", constant, true, 0},
          {"no clip, no ema", no_clip, false, 0},
          {"no clip, no ema, misaligned", no_clip, false, 1}};
}

// Tolerances after s steps, each side (kernel, CPU) in float against exact
// arithmetic (so twice the one-sided bound), FMA contraction only removing
// roundings:
//   v: positive terms; the new term (1 - b2) g g has 3 roundings (g = grad x
//     clip, two products) + the sum, the old one 2 more per step: relative
//     (2s + 2)u <= 4su per side, 8su.
//   m: signed terms, |m| <= M = max(|m_0|, max |g|): <= 4uM per step per side, 8suM.
//   param: 2 roundings per step on |p| per side (decay, subtraction): 4su|p|,
//     6su|p| with margin; the update lr m_hat / (sqrt(v_hat) + eps) has ~6
//     roundings of its own (<= 20u lr at |m_hat / sqrt(v_hat)| <= 3) and carries
//     m's error over sqrt(v) / sqrt(bc2) (<= 80u lr with v >= 0.999 v_0 +
//     0.001 g^2 as set up here): 1000su lr covers both with margin.
//   ema: 2 roundings per step per side on |ema| + |(1 - d) p|, plus p's error.
TEST(AdamWEma, MatchesTheCpuAdamWAndEmaOverSeveralSteps) {
  DDPM_REQUIRE_DEVICE();
  constexpr int kSteps = 6;
  const int64_t n = kAdamN;
  Margin mp{"param_worst_error_over_tolerance"}, mm{"m_worst_error_over_tolerance"},
      mv{"v_worst_error_over_tolerance"}, me{"ema_worst_error_over_tolerance"};
  for (const AdamCase& ac : adam_cases()) {
    SCOPED_TRACE(ac.name);
    const k::AdamWEmaConfig& c = ac.config;
    std::vector<float> p = random_floats(size_t(n), 11), m(p.size()), v(p.size()), ema = p;
    // Non-zero moments, as after earlier steps (v > 0).
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = 0.01f * p[(i * 7) % p.size()];
      v[i] = 1e-4f * (1.0f + 0.5f * std::abs(p[(i * 13) % p.size()]));
    }
    Slice p_dev(size_t(n), ac.offset), g_dev(size_t(n), ac.offset), m_dev(size_t(n), ac.offset),
        v_dev(size_t(n), ac.offset), e_dev(size_t(n), ac.offset);
    p_dev.upload(p), m_dev.upload(m), v_dev.upload(v), e_dev.upload(ema);
    DeviceArray<uint32_t> step(1);
    DeviceArray<float> norm(1);
    DeviceArray<double> workspace(k::grad_norm_workspace_bytes(n) / sizeof(double));
    std::vector<double> gmax(p.size());  // M of the comment above
    for (size_t i = 0; i < m.size(); ++i) gmax[i] = std::abs(double(m[i]));
    for (int s = 1; s <= kSteps; ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      const std::vector<float> g = random_floats(size_t(n), 1000 + uint64_t(s), s % 2 ? 1.0 : 0.1);
      g_dev.upload(g);
      const auto su = uint32_t(s);
      ASSERT_EQ(cudaMemcpy(step.get(), &su, sizeof su, cudaMemcpyHostToDevice), cudaSuccess);
      k::grad_norm(g_dev.get(), n, norm.get(), workspace.get(), nullptr);
      k::adamw_ema_step(p_dev.get(), g_dev.get(), m_dev.get(), v_dev.get(),
                        ac.ema ? e_dev.get() : nullptr, n, step.get(),
                        c.clip_norm > 0 ? norm.get() : nullptr, c, nullptr);

      // The CPU reference with the trainer's warmup and clip factor (from the
      // device's float norm, so both sides scale by the same factor).
      const double norm_value = download_one(norm.get());
      EXPECT_NEAR(norm_value, cpu::global_norm(g.data(), n),
                  norm_value * (kU + 2 * double(n) * 0x1p-53));
      const double clip =
          c.clip_norm > 0 ? std::min(1.0, double(c.clip_norm) / (norm_value + 1e-6)) : 1.0;
      EXPECT_EQ(clip<1.0, c.clip_norm> 0 && s % 2 == 1) << "clipping active on odd steps only";
      const double warm = c.warmup_steps > 0 ? std::min(1.0, double(s) / c.warmup_steps) : 1.0;
      const AdamWConfig cpu_config{double(c.lr) * warm, double(c.beta1), double(c.beta2),
                                   double(c.eps), double(c.weight_decay)};
      cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, cpu_config, s, clip);
      if (ac.ema) cpu::ema_update(ema.data(), p.data(), n, ema_decay_at(c.ema, s));
      for (size_t i = 0; i < g.size(); ++i) gmax[i] = std::max(gmax[i], std::abs(double(g[i])));

      const std::vector<float> gp = p_dev.download(), gm = m_dev.download(), gv = v_dev.download(),
                               ge = e_dev.download();
      const std::vector<float> ga = g_dev.download();
      ASSERT_EQ(std::memcmp(ga.data(), g.data(), g.size() * sizeof(float)), 0) << "grad changed";
      const double sd = s, lr = c.lr;
      for (size_t i = 0; i < p.size(); ++i) {
        ASSERT_TRUE(std::isfinite(gp[i]) && std::isfinite(gm[i]) && std::isfinite(gv[i]))
            << "element " << i << " not written";
        const double tol_p = sd * kU * (6 * std::abs(p[i]) + 1000 * lr);
        const double tol_m = 8 * sd * kU * gmax[i], tol_v = 8 * sd * kU * v[i];
        const double tol_e = 6 * sd * kU * (std::abs(ema[i]) + std::abs(p[i])) + tol_p;
        ASSERT_NEAR(gp[i], p[i], tol_p) << "param " << i;
        ASSERT_NEAR(gm[i], m[i], tol_m) << "m " << i;
        ASSERT_NEAR(gv[i], v[i], tol_v) << "v " << i;
        mp.add(gp[i], p[i], tol_p), mm.add(gm[i], m[i], tol_m), mv.add(gv[i], v[i], tol_v);
        if (ac.ema) {
          ASSERT_NEAR(ge[i], ema[i], tol_e) << "ema " << i;
          me.add(ge[i], ema[i], tol_e);
        } else {
          ASSERT_TRUE(std::isfinite(ge[i]) && ge[i] == ema[i]) << "ema touched without EMA " << i;
        }
      }
    }
  }
}

// The optional bf16 copy of the parameters (issue 11): after each of 3 steps
// it holds exactly round_to_nearest_even(param) of the fp32 master (an exact
// check: one rounding of a value both sides have), and param, m, v, ema are
// bitwise those of the same steps without the copy. bf16 offsets: 0 (the
// vector path's 8-byte stores), 1 element (2 bytes: the scalar path); fp32
// offsets 0 and 1. The copy's guards catch a write past its n elements.
uint16_t round_to_bf16_bits(float f) {  // nearest even, finite f
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return uint16_t((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

TEST(AdamWEma, Bf16CopyIsTheRoundedMasterAndChangesNothingElse) {
  DDPM_REQUIRE_DEVICE();
  const int64_t n = kAdamN;
  for (const AdamCase& ac : adam_cases())
    for (size_t bf16_offset : {size_t(0), size_t(1)}) {
      SCOPED_TRACE(ac.name + ", bf16 copy at offset " + std::to_string(bf16_offset));
      const k::AdamWEmaConfig& c = ac.config;
      const std::vector<float> p = random_floats(size_t(n), 21);
      std::vector<float> m(p.size()), v(p.size());
      for (size_t i = 0; i < p.size(); ++i) m[i] = 0.01f * p[(i * 7) % p.size()];
      for (size_t i = 0; i < p.size(); ++i) v[i] = 1e-4f * (1.0f + std::abs(p[(i * 3) % p.size()]));
      struct State {
        Slice p, g, m, v, e;
      };
      auto make = [&] {
        const size_t o = ac.offset, sz = size_t(n);
        std::unique_ptr<State> st(
            new State{Slice(sz, o), Slice(sz, o), Slice(sz, o), Slice(sz, o), Slice(sz, o)});
        st->p.upload(p), st->m.upload(m), st->v.upload(v), st->e.upload(p);
        return st;
      };
      const auto plain = make(), with_copy = make();
      GuardedSlice<uint16_t> copy(size_t(n), bf16_offset);
      DeviceArray<uint32_t> step(1);
      DeviceArray<float> norm(1);
      DeviceArray<double> workspace(k::grad_norm_workspace_bytes(n) / sizeof(double));
      for (int s = 1; s <= 3; ++s) {
        SCOPED_TRACE("step " + std::to_string(s));
        const auto su = uint32_t(s);
        ASSERT_EQ(cudaMemcpy(step.get(), &su, sizeof su, cudaMemcpyHostToDevice), cudaSuccess);
        const std::vector<float> g = random_floats(size_t(n), 2000 + uint64_t(s));
        copy.poison();
        for (State* st : {plain.get(), with_copy.get()}) {
          st->g.upload(g);
          k::grad_norm(st->g.get(), n, norm.get(), workspace.get(), nullptr);
          k::adamw_ema_step(
              st->p.get(), st->g.get(), st->m.get(), st->v.get(), ac.ema ? st->e.get() : nullptr, n,
              step.get(), c.clip_norm > 0 ? norm.get() : nullptr, c, nullptr,
              st == with_copy.get() ? reinterpret_cast<__nv_bfloat16*>(copy.get()) : nullptr);
        }
        for (auto [a, b, what] : {std::tuple{&plain->p, &with_copy->p, "param"},
                                  {&plain->m, &with_copy->m, "m"},
                                  {&plain->v, &with_copy->v, "v"},
                                  {&plain->e, &with_copy->e, "ema"}}) {
          const std::vector<float> x = a->download(), y = b->download();
          ASSERT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0)
              << what << " differs with the bf16 copy";
        }
        const std::vector<float> master = with_copy->p.download();
        const std::vector<uint16_t> got = copy.download();  // also checks the guards
        for (size_t i = 0; i < master.size(); ++i)
          ASSERT_EQ(got[i], round_to_bf16_bits(master[i]))
              << "element " << i << " of the copy, master " << master[i];
      }
    }
}

TEST(AdamWEma, EmptyAndBadInputs) {
  DDPM_REQUIRE_DEVICE();
  k::AdamWEmaConfig c;
  c.clip_norm = 1;
  DeviceArray<float> f(4);
  DeviceArray<uint32_t> step(1);
  k::adamw_ema_step(nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr, nullptr, c, nullptr);
  EXPECT_THROW(k::adamw_ema_step(f.get(), f.get(), f.get(), f.get(), nullptr, 4, step.get(),
                                 nullptr, c, nullptr),
               std::invalid_argument);  // clipping without a norm
  EXPECT_THROW(k::adamw_ema_step(f.get(), f.get(), f.get(), f.get(), nullptr, -1, step.get(),
                                 f.get(), c, nullptr),
               std::invalid_argument);
  c.beta2 = 1.0f;
  EXPECT_THROW(k::adamw_ema_step(f.get(), f.get(), f.get(), f.get(), nullptr, 4, step.get(),
                                 f.get(), c, nullptr),
               std::invalid_argument);
}

}  // namespace
}  // namespace ddpm::testing
