// DDPMScheduler / DDIMScheduler parity with the real diffusers library:
// tests/golden/schedulers.json was written by tools/gen_golden.py.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/scheduler.h"
#include "engine/unet_config.h"
#include "golden_data.h"

namespace ddpm {
namespace {

using nlohmann::json;

using testing::load_golden_json;

SchedulerConfig config_of(const json& c) {
  json cfg = c["config"];
  cfg["_class_name"] = c["kind"] == "ddpm" ? "DDPMScheduler" : "DDIMScheduler";
  SchedulerConfig s = parse_scheduler_config(cfg.dump(), "golden");
  if (c["step_kwargs"].contains("eta")) s.eta = c["step_kwargs"]["eta"].get<double>();
  if (c["step_kwargs"].contains("use_clipped_model_output"))
    s.use_clipped_model_output = c["step_kwargs"]["use_clipped_model_output"].get<bool>();
  return s;
}

TEST(SchedulerParity, TablesMatchDiffusers) {
  const json g = load_golden_json("schedulers.json");
  for (const auto& [schedule, table] : g["tables"].items()) {
    SchedulerConfig c;
    c.beta_schedule = schedule;
    const Scheduler s(c);
    const auto betas = table["betas"].get<std::vector<double>>();
    const auto abar = table["alphas_cumprod"].get<std::vector<double>>();
    ASSERT_EQ(s.betas().size(), betas.size());
    // diffusers computes in float32. Its linspace value v (beta, or sqrt(beta)
    // for scaled_linear) is off by up to ~2 ulp of the largest value, and each
    // rounding after adds 2^-24 relative; the cumulative product then sums the
    // relative errors of its factors plus one rounding per step.
    const double u = std::ldexp(1.0, -24);
    const bool squared = schedule == "scaled_linear";
    const double v_max = squared ? std::sqrt(0.02) : 0.02;
    double abar_rel = 0;
    for (size_t t = 0; t < betas.size(); ++t) {
      const double b = s.betas()[t], dv = 2 * 2 * u * v_max;
      double tol = squared ? 2 * std::sqrt(b) * dv + 2 * u * b : dv + 2 * u * b;
      if (schedule == "squaredcos_cap_v2") tol = 2 * u * b;  // float64 in diffusers, then rounded
      EXPECT_NEAR(b, betas[t], tol) << schedule << " t " << t;
      abar_rel += tol / (1 - b) + 2 * u;
      EXPECT_NEAR(s.alphas_cumprod()[t], abar[t], abar_rel * abar[t]) << schedule << " t " << t;
    }
  }
}

TEST(SchedulerParity, TimestepsAndStepsMatchDiffusers) {
  const json g = load_golden_json("schedulers.json");
  int checked = 0;
  for (const json& c : g["cases"]) {
    const Scheduler s(config_of(c));
    const int64_t steps = c["steps"].get<int64_t>();
    const std::string what = c["kind"].get<std::string>() + " " + c["config"].dump() + " " +
                             c["step_kwargs"].dump() + " steps " + std::to_string(steps);
    EXPECT_EQ(s.timesteps(steps), c["timesteps"].get<std::vector<int64_t>>()) << what;
    for (const json& r : c["records"]) {
      const StepCoefficients k = s.step(steps, r["index"].get<int64_t>());
      ASSERT_EQ(k.timestep, r["timestep"].get<int64_t>()) << what;
      const auto x = r["sample"].get<std::vector<double>>();
      const auto m = r["model_output"].get<std::vector<double>>();
      const auto z = r["noise"].get<std::vector<double>>();
      const auto want = r["prev_sample"].get<std::vector<double>>();
      std::vector<double> got(x.size());
      noise_update<double>(k, x.data(), m.data(), z.data(), got.data(), int64_t(x.size()));
      // diffusers evaluates the step in float32 from float32 tables: relative
      // error ~1e-6 per term, amplified up to 1/sqrt(abar_t) ~ 160 at t = 999
      // through x0 = (x - sqrt(1 - abar) eps) / sqrt(abar), and at small t by
      // the cancellation in 1 - abar_t (relative error u / (1 - abar_t), which
      // reaches the result as ~u / sqrt(1 - abar_t)).
      const double abar_t = s.alphas_cumprod()[size_t(k.timestep)];
      const double amplification = 1 / std::sqrt(abar_t) + 1 / std::sqrt(1 - abar_t);
      for (size_t i = 0; i < x.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 2e-6 * amplification * (1 + std::abs(want[i])))
            << what << " index " << r["index"] << " element " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

}  // namespace
}  // namespace ddpm
