// A training step of a small UNet on the CPU backend gives the same bits at
// 1, 2 and 3 threads, for every kernel table this CPU has (the fast f32 path
// on AVX-512 and AVX2, and the reference code): the loss, gradient norm,
// parameters and EMA. The per-op versions are in test_op_fast.cpp; this
// covers the rest of a step (elementwise ops, dropout, the loss, the
// optimizer) and the ops' composition.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/fast/isa.h"
#include "engine/cpu/thread_pool.h"
#include "engine/trainer.h"
#include "tests/synthetic_images.h"
#include "tests/tiny_unet.h"

namespace ddpm {
namespace {

namespace fast = cpu::fast;

// test_trainer.cpp's tiny model: two levels, attention, GroupNorm with
// several channels per group, dropout.
TrainConfig tiny_config() {
  TrainConfig c;
  c.model = testing::tiny_unet(/*attention_in_level_2=*/true, /*head_dim=*/0);
  c.training.batch_size = 4;
  c.training.learning_rate = 2e-3;
  c.training.warmup_steps = 1;
  c.training.ema_decay = 0.9;
  c.training.seed = 3;
  return c;
}

struct TrainRun {
  std::vector<StepMetrics> metrics;
  std::vector<float> parameters, ema;
};

TrainRun train(int threads) {
  cpu::set_cpu_threads(threads);
  static const ImageDataset data = testing::squares(12);
  CpuBackend backend;
  Trainer t(tiny_config(), data, backend);
  TrainRun r;
  for (int i = 0; i < 2; ++i) r.metrics.push_back(t.train_step());
  r.parameters = t.parameters();
  r.ema = t.ema();
  return r;
}

class CpuThreadsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    cpu::set_cpu_threads(threads_);
    fast::set_isa(isa_);
  }
  int threads_ = cpu::cpu_threads();
  fast::Isa isa_ = fast::active_isa();
};

TEST_F(CpuThreadsTest, TrainingStepIsBitwiseTheSameAtOneTwoAndThreeThreads) {
  for (fast::Isa isa : {fast::Isa::none, fast::Isa::avx2, fast::Isa::avx512}) {
    try {
      fast::set_isa(isa);
    } catch (const std::invalid_argument&) {
      continue;  // not on this CPU or build
    }
    SCOPED_TRACE(std::string("isa ") + fast::isa_name(isa));
    const TrainRun one = train(1);
    ASSERT_TRUE(std::isfinite(one.metrics.back().loss));
    for (int threads : {2, 3}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      const TrainRun r = train(threads);
      for (size_t i = 0; i < one.metrics.size(); ++i) {
        EXPECT_EQ(r.metrics[i].loss, one.metrics[i].loss) << "step " << i + 1;
        EXPECT_EQ(r.metrics[i].grad_norm, one.metrics[i].grad_norm) << "step " << i + 1;
      }
      EXPECT_TRUE(r.parameters == one.parameters) << "parameters differ";
      EXPECT_TRUE(r.ema == one.ema) << "EMA differs";
    }
  }
}

}  // namespace
}  // namespace ddpm
