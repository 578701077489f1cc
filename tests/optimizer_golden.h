// A parameter updater (engine/parameter_updater.h) against what PyTorch and
// diffusers compute for the same optimizer step: clip_grad_norm_, AdamW under
// a LambdaLR warmup and diffusers' EMAModel, from tests/golden/optimizer.json
// (tools/gen_golden_optimizer.py). Shared by the CPU test and the CUDA
// backend's (emulated and GPU) test.
//
// Tolerances. Both sides run the update in float32, in different orders of
// operations (torch: exp_avg.lerp_, addcdiv_; ours: b1 m + (1 - b1) g,
// m / (sqrt(v) / sqrt(bc2) + eps)), and the norms are summed in different
// precision (torch float32, ours double). Per step, with u = 2^-24:
//   - the parameter: decay and subtraction round twice on |p| per side (4u|p|),
//     and the update lr m_hat / (sqrt(v_hat) + eps), |m_hat / sqrt(v_hat)| <= ~3
//     here, carries ~10 roundings of its own plus m's and v's (2u each per
//     side, amplified by at most 3): within 100 u lr with margin. The errors of
//     earlier steps carry over (m and p are sums), so after k steps
//     k u (8 |p| + 100 lr).
//   - the EMA: diffusers' update in diffusers' order on both sides (3 roundings
//     on |e| + |p| per side) plus the parameters' error it averages:
//     tol_p + 8 k u (|e| + |p|).
//   - the gradient norm: a float32 sum of 37 squares and its sqrt (torch) against
//     a double sum (ours): 64 u relative.
//   - the EMA decay and the learning rate are computed in double on both sides
//     from the same formula: 1e-15 relative.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/parameter_updater.h"
#include "engine/train_config.h"
#include "golden_data.h"

namespace ddpm::testing {

inline OptimizerSettings golden_optimizer_settings(const nlohmann::json& s) {
  TrainConfig::Training t;
  t.learning_rate = s["lr"].get<double>();
  t.adam_beta1 = s["beta1"].get<double>();
  t.adam_beta2 = s["beta2"].get<double>();
  t.adam_epsilon = s["eps"].get<double>();
  t.weight_decay = s["weight_decay"].get<double>();
  t.warmup_steps = s["warmup_steps"].get<int64_t>();
  t.grad_clip_norm = s["grad_clip_norm"].get<double>();
  t.ema_decay = s["ema_decay"].get<double>();
  t.ema_warmup = s["ema_warmup"].get<std::string>();
  t.ema_inv_gamma = s["ema_inv_gamma"].get<double>();
  t.ema_power = s["ema_power"].get<double>();
  t.ema_update_after_step = s["ema_update_after_step"].get<int64_t>();
  t.ema_min_decay = s["ema_min_decay"].get<double>();
  OptimizerSettings o;
  o.adam = AdamWConfig{t.learning_rate, t.adam_beta1, t.adam_beta2, t.adam_epsilon, t.weight_decay};
  o.warmup_steps = t.warmup_steps;
  o.grad_clip_norm = t.grad_clip_norm;
  o.ema = ema_schedule(t);
  return o;
}

// Runs every golden case through an updater that `make` creates on `backend`
// and compares every step's norm, parameters and EMA.
inline void expect_updater_matches_golden(Backend& backend, const ParameterUpdaterFactory& make) {
  const nlohmann::json g = load_golden_json("optimizer.json");
  constexpr double u = 0x1p-24;
  ASSERT_GE(g["cases"].size(), 4u);
  for (const nlohmann::json& c : g["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const OptimizerSettings settings = golden_optimizer_settings(c["settings"]);
    const auto initial = c["initial"].get<std::vector<float>>();
    const auto n = int64_t(initial.size());
    DeviceBuffer param_memory(backend, initial.size() * sizeof(float)),
        grad_memory(backend, initial.size() * sizeof(float));
    const Tensor params{param_memory.data(), Shape{n}, DType::f32, backend.device()};
    const Tensor grads{grad_memory.data(), Shape{n}, DType::f32, backend.device()};
    backend.copy_from_host(params.data, initial.data(), params.bytes());
    const std::unique_ptr<ParameterUpdater> updater = make(backend, params, settings);
    int64_t k = 0;
    std::vector<double> before(initial.begin(), initial.end());  // the golden p of step k - 1
    for (const nlohmann::json& step : c["steps"]) {
      ++k;
      SCOPED_TRACE("step " + std::to_string(k));
      const auto g_host = step["grads"].get<std::vector<float>>();
      ASSERT_EQ(g_host.size(), initial.size());
      backend.copy_from_host(grads.data, g_host.data(), grads.bytes());
      EXPECT_NEAR(ema_decay_at(settings.ema, k), step["ema_decay"].get<double>(), 1e-15);
      const double lr = step["lr"].get<double>();
      EXPECT_NEAR(warmup_learning_rate(settings, k), lr, 1e-15 * lr);
      const double norm = updater->step(params, grads, k);
      const double want_norm = step["grad_norm"].get<double>();
      EXPECT_NEAR(norm, want_norm, 64 * u * want_norm);

      std::vector<float> p(initial.size());
      backend.copy_to_host(p.data(), params.data, params.bytes());
      const std::vector<float> e = updater->read(ParameterUpdater::Slot::ema);
      const auto want_p = step["params"].get<std::vector<double>>();
      const auto want_e = step["ema"].get<std::vector<double>>();
      const double kd = double(k), lr_max = settings.adam.lr;
      for (size_t i = 0; i < p.size(); ++i) {
        // |p| before or after the step, whichever is larger: an update can
        // cancel most of p, leaving the rounding of the operands.
        const double scale_p = std::max(std::abs(want_p[i]), std::abs(before[i]));
        const double tol_p = kd * u * (8 * scale_p + 100 * lr_max);
        const double tol_e = tol_p + 8 * kd * u * (std::abs(want_e[i]) + std::abs(want_p[i]));
        ASSERT_NEAR(p[i], want_p[i], tol_p) << "parameter " << i;
        ASSERT_NEAR(e[i], want_e[i], tol_e) << "ema " << i;
      }
      before = want_p;
    }
  }
}

// A NaN or inf gradient reaches the norm, and the step changes nothing:
// parameters, moments and EMA stay those of the step before.
inline void expect_updater_skips_non_finite_gradients(Backend& backend,
                                                      const ParameterUpdaterFactory& make) {
  OptimizerSettings settings;
  settings.adam.lr = 1e-2;
  settings.grad_clip_norm = 1.0;
  const std::vector<float> initial{0.5f, -1.0f, 2.0f, 0.25f, -0.75f};
  const auto n = int64_t(initial.size());
  DeviceBuffer param_memory(backend, initial.size() * sizeof(float)),
      grad_memory(backend, initial.size() * sizeof(float));
  const Tensor params{param_memory.data(), Shape{n}, DType::f32, backend.device()};
  const Tensor grads{grad_memory.data(), Shape{n}, DType::f32, backend.device()};
  backend.copy_from_host(params.data, initial.data(), params.bytes());
  const std::unique_ptr<ParameterUpdater> updater = make(backend, params, settings);
  const std::vector<float> good{0.1f, -0.2f, 0.3f, 0.05f, -0.1f};
  backend.copy_from_host(grads.data, good.data(), grads.bytes());
  ASSERT_TRUE(std::isfinite(updater->step(params, grads, 1)));
  auto state = [&] {
    std::vector<float> p(initial.size());
    backend.copy_to_host(p.data(), params.data, params.bytes());
    using Slot = ParameterUpdater::Slot;
    return std::vector<std::vector<float>>{p, updater->read(Slot::adam_m),
                                           updater->read(Slot::adam_v), updater->read(Slot::ema)};
  };
  const auto after_good = state();
  ASSERT_NE(after_good[0], initial) << "the good step should move the parameters";
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> g = good;
    g[2] = bad;
    backend.copy_from_host(grads.data, g.data(), grads.bytes());
    EXPECT_FALSE(std::isfinite(updater->step(params, grads, 2))) << bad;
    EXPECT_EQ(state(), after_good) << "a step with gradient " << bad << " changed the state";
  }
}

}  // namespace ddpm::testing
