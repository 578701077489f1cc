// The CPU parameter updater against PyTorch's AdamW + clip_grad_norm_ and
// diffusers' EMAModel (tests/optimizer_golden.h), and the EMA schedule's
// config keys.
#include <gtest/gtest.h>

#include "engine/cpu/cpu_backend.h"
#include "engine/train_config.h"
#include "optimizer_golden.h"

namespace ddpm {
namespace {

TEST(OptimizerGolden, CpuUpdaterMatchesTorchAdamWAndDiffusersEma) {
  CpuBackend cpu;
  testing::expect_updater_matches_golden(cpu, make_cpu_parameter_updater);
}

TEST(OptimizerGolden, CpuUpdaterSkipsNonFiniteGradients) {
  CpuBackend cpu;
  testing::expect_updater_skips_non_finite_gradients(cpu, make_cpu_parameter_updater);
}

// "none" is not a diffusers mode: the paper's constant decay (and the old
// behaviour), with update_after_step and min_decay still applying.
TEST(EmaSchedule, ConstantDecayWithoutWarmup) {
  EmaSchedule s;
  s.decay = 0.999;
  s.warmup = EmaWarmup::none;
  EXPECT_EQ(ema_decay_at(s, 1), 0.999);
  EXPECT_EQ(ema_decay_at(s, 100000), 0.999);
  s.update_after_step = 5;
  EXPECT_EQ(ema_decay_at(s, 5), 0.0);  // copies the weights through step 5
  EXPECT_EQ(ema_decay_at(s, 6), 0.999);
}

TEST(EmaSchedule, DefaultWarmupReachesTheCeiling) {
  EmaSchedule s;  // diffusers' defaults: decay 0.9999, (1 + k) / (10 + k)
  EXPECT_EQ(ema_decay_at(s, 1), 0.0);
  EXPECT_DOUBLE_EQ(ema_decay_at(s, 2), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(ema_decay_at(s, 1000), 1000.0 / 1009.0);
  EXPECT_EQ(ema_decay_at(s, 200000), 0.9999);
}

TrainConfig parse_with_training(const std::string& training) {
  return parse_train_config(
      R"({"model": {"sample_size": 8, "in_channels": 1, "out_channels": 1,
          "block_out_channels": [8], "layers_per_block": 1, "norm_num_groups": 4,
          "down_block_types": ["DownBlock2D"], "up_block_types": ["UpBlock2D"]},
          "training": )" +
          training + "}",
      "test.json");
}

TEST(EmaSchedule, ConfigKeysRoundTripAndBadValuesNameTheKey) {
  const TrainConfig c = parse_with_training(
      R"({"ema_decay": 0.95, "ema_warmup": "power", "ema_inv_gamma": 2.5, "ema_power": 0.75,
          "ema_update_after_step": 7, "ema_min_decay": 0.25})");
  const EmaSchedule s = ema_schedule(c.training);
  EXPECT_EQ(s.warmup, EmaWarmup::power);
  EXPECT_EQ(s.decay, 0.95);
  EXPECT_EQ(s.inv_gamma, 2.5);
  EXPECT_EQ(s.power, 0.75);
  EXPECT_EQ(s.update_after_step, 7);
  EXPECT_EQ(s.min_decay, 0.25);
  // Written into checkpoints' train_config.json and read back unchanged.
  const TrainConfig again = parse_train_config(train_config_to_json(c), "again");
  EXPECT_EQ(train_config_to_json(again), train_config_to_json(c));
  EXPECT_EQ(ema_schedule(parse_with_training("{}").training).warmup, EmaWarmup::diffusers_default);

  const std::pair<const char*, const char*> bad[] = {
      {R"({"ema_warmup": "linear"})", "ema_warmup"},
      {R"({"ema_warmup": 3})", "ema_warmup"},
      {R"({"ema_inv_gamma": 0})", "ema_inv_gamma"},
      {R"({"ema_power": -1})", "ema_power"},
      {R"({"ema_update_after_step": -2})", "ema_update_after_step"},
      {R"({"ema_min_decay": 1.0})", "ema_min_decay"},
  };
  for (const auto& [json, key] : bad) {
    SCOPED_TRACE(json);
    try {
      parse_with_training(json);
      ADD_FAILURE() << "accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace ddpm
