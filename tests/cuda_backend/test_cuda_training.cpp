// Training and sampling on the CUDA backend against the CPU backend: the
// Trainer with the device-side optimizer step (engine/cuda/
// cuda_parameter_updater.h) and sample_batch with the model on the device.
//
// Training tolerances. Both trainers start from the same bits (parameters
// from the seed, the same batches, timesteps, noise and dropout masks) and
// differ only by fp32 rounding: in the model's forward and backward (the
// comparisons of backend_compare.h measure those at a few 1e-7 relative to a
// tensor's largest value) and in the optimizer's scalars (the kernel derives
// them from a float config and the float norm: relative 1e-7 again). So
//   - step 1's loss and gradient norm agree to that rounding: we allow
//     1e-5 relative (about 100 fp32 ulps, a sum over the batch's 128 pixels of
//     products whose rounding differs in order);
//   - AdamW amplifies gradient differences: at step s an element moves by
//     lr_s m_hat / (sqrt(v_hat) + eps), and where |g| is of the order of its
//     own rounding error (a few 1e-9 here) that ratio, d/dg <= lr / eps, can
//     move by up to 2 lr_s. Such elements are rare but they exist in every
//     UNet (gradients that cancel across the batch), so the maximum parameter
//     difference is bounded by the sum of the learning rates, S = sum_s lr_s,
//     not by fp32 rounding. What a bug does is different: a wrong learning
//     rate, warmup, clip factor or bias correction moves EVERY element by a
//     fraction of lr, and a missing EMA or moment update leaves them at their
//     start. So we check (a) max |dp| <= S, (b) the mean |dp| <= 1e-3 S
//     (measured under the emulator: ~1e-5 S), which a uniform error of even
//     0.1% of the update fails, (c) the same for the EMA (a convex mix of the
//     parameters, so the same bounds) and (d) later losses within 1e-3
//     relative (the parameters differ by far less than an lr step on average).
// Sampling tolerance: the noise update is the same host code on both, so
// images differ only through the model's predictions; as in backend_compare.h
// the CPU's own f32 error against an f64 run of the same sampler scales the
// bound: max |cuda - f64| <= 16 max(max |cpu32 - f64|, 4 u max |f64|). Three
// steps of an unclipped DDPM schedule from a random model keep the images
// sensitive to every prediction (x0 estimates of |x| up to ~25).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_parameter_updater.h"
#include "engine/executor.h"
#include "engine/random.h"
#include "engine/sampler.h"
#include "engine/trainer.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/optimizer_golden.h"
#include "tests/synthetic_images.h"

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::squares;

// Two levels (8 and 16 channels), the mid block's attention, dropout: every
// op of the real model at a size the emulator trains in a few seconds.
UNetConfig tiny_model() {
  UNetConfig c;
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.in_channels = c.out_channels = 1;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.down_block_types = {"DownBlock2D", "DownBlock2D"};
  c.up_block_types = {"UpBlock2D", "UpBlock2D"};
  c.norm_num_groups = 4;
  c.attention_head_dim = 8;
  c.dropout = 0.1;
  return c;
}

TrainConfig tiny_training() {
  TrainConfig c;
  c.model = tiny_model();
  c.training.batch_size = 2;
  c.training.learning_rate = 2e-3;
  c.training.warmup_steps = 2;      // steps 1 and 2 at lr/2 and lr
  c.training.grad_clip_norm = 0.5;  // below the tiny model's norms: clipping is active
  c.training.weight_decay = 0.01;
  c.training.ema_decay = 0.9;
  c.training.seed = 17;
  return c;
}

struct Difference {
  double max = 0, mean = 0;
};

Difference difference(const std::vector<float>& a, const std::vector<float>& b) {
  Difference d;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double e = std::abs(double(a[i]) - double(b[i]));
    EXPECT_TRUE(std::isfinite(e)) << "element " << i;
    d.max = std::max(d.max, e);
    d.mean += e / double(a.size());
  }
  return d;
}

TEST(CudaTraining, StepsMatchCpuAndCheckpointsResumeBitwise) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = squares(6);
  const TrainConfig c = tiny_training();
  constexpr int kSteps = 3;

  CpuBackend cpu;
  Trainer on_cpu(c, data, cpu);
  CudaBackend gpu;
  Trainer on_gpu(c, data, gpu, make_cuda_parameter_updater);
  ASSERT_EQ(on_gpu.parameters(), on_cpu.parameters());  // the same initialisation
  ASSERT_EQ(on_gpu.ema(), on_cpu.parameters());

  const fs::path dir =
      fs::temp_directory_path() / ("ddpm_cuda_training_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  double lr_sum = 0;
  for (int s = 1; s <= kSteps; ++s) {
    const StepMetrics a = on_cpu.train_step(), b = on_gpu.train_step();
    ASSERT_EQ(b.step, s);
    EXPECT_EQ(b.learning_rate, a.learning_rate);
    lr_sum += a.learning_rate;
    const double loss_tol = (s == 1 ? 1e-5 : 1e-3) * std::abs(a.loss);
    EXPECT_NEAR(b.loss, a.loss, loss_tol) << "step " << s;
    EXPECT_NEAR(b.grad_norm, a.grad_norm, (s == 1 ? 1e-5 : 1e-3) * a.grad_norm) << "step " << s;
    EXPECT_GT(a.grad_norm, c.training.grad_clip_norm) << "the test wants clipping active";
    if (s == kSteps - 1) on_gpu.save_checkpoint(dir);
  }
  const Difference params = difference(on_gpu.parameters(), on_cpu.parameters());
  const Difference ema = difference(on_gpu.ema(), on_cpu.ema());
  // How far training moved them, so that the bounds are not vacuous.
  const Difference moved = difference(on_cpu.parameters(), Trainer(c, data, cpu).parameters());
  if (std::getenv("DDPM_COMPARE_VERBOSE"))
    std::printf("params: max %.3g mean %.3g; ema: max %.3g mean %.3g; moved mean %.3g; S %.3g\n",
                params.max, params.mean, ema.max, ema.mean, moved.mean, lr_sum);
  EXPECT_GT(moved.mean, 0.1 * lr_sum);
  EXPECT_LE(params.max, lr_sum);
  EXPECT_LE(params.mean, 1e-3 * lr_sum);
  EXPECT_LE(ema.max, lr_sum);
  EXPECT_LE(ema.mean, 1e-3 * lr_sum);

  // Resumed on the device from the host copies of step kSteps - 1: the same
  // bits as the uninterrupted run (the kernels are deterministic).
  Trainer resumed(c, data, gpu, make_cuda_parameter_updater);
  resumed.resume(dir);
  ASSERT_EQ(resumed.step(), kSteps - 1);
  resumed.train_step();
  EXPECT_EQ(resumed.parameters(), on_gpu.parameters());
  EXPECT_EQ(resumed.ema(), on_gpu.ema());
  fs::remove_all(dir);
}

// The device-side optimizer step (its EMA decay computed on the device from the
// step counter) against PyTorch's AdamW and diffusers' EMAModel.
TEST(CudaTraining, UpdaterMatchesTorchAdamWAndDiffusersEma) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  testing::expect_updater_matches_golden(gpu, make_cuda_parameter_updater);
}

TEST(CudaTraining, TrainerWithoutUpdaterRejectsTheCudaBackend) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = squares(2);
  CudaBackend gpu;
  EXPECT_THROW(Trainer(tiny_training(), data, gpu), std::logic_error);
  CpuBackend cpu;
  EXPECT_THROW(Trainer(tiny_training(), data, cpu, make_cuda_parameter_updater),
               std::invalid_argument);
}

// Three DDPM steps of two images from the same parameters on the CUDA
// backend, the CPU backend in f32 and in f64.
TEST(CudaSampling, DdpmStepsMatchCpu) {
  DDPM_REQUIRE_DEVICE();
  UNetBuildOptions o;
  o.batch = 2;
  const UNetGraph g32 = build_unet(tiny_model(), o);
  o.dtype = DType::f64;
  const UNetGraph g64 = build_unet(tiny_model(), o);
  CpuBackend cpu;
  CudaBackend gpu;
  Executor ex_cpu(g32.graph, cpu, ExecMode::inference), ex_gpu(g32.graph, gpu, ExecMode::inference),
      ex_f64(g64.graph, cpu, ExecMode::inference);
  ex_cpu.init_parameters(3);
  const std::vector<float> params = ex_cpu.read(ex_cpu.parameters());
  gpu.copy_from_host(ex_gpu.parameters().data, params.data(), params.size() * sizeof(float));
  const std::vector<double> params64(params.begin(), params.end());
  cpu.copy_from_host(ex_f64.parameters().data, params64.data(), params64.size() * sizeof(double));

  SchedulerConfig sc;
  sc.kind = "ddpm";
  // Unclipped: a randomly initialised model's x0 estimates lie far outside
  // [-1, 1], and clamping them would hide most of the model's output.
  sc.clip_sample = false;
  const Scheduler scheduler(sc);
  SamplerOptions so;
  so.steps = 3;
  so.seed = 23;
  so.first_image = 4;
  std::vector<float> on_cpu, on_gpu, exact;
  sample_batch(ex_cpu, g32, scheduler, so, on_cpu);
  sample_batch(ex_gpu, g32, scheduler, so, on_gpu);
  sample_batch(ex_f64, g64, scheduler, so, exact);
  ASSERT_EQ(on_gpu.size(), size_t(2 * 64));
  double largest = 0;
  for (float v : exact) largest = std::max(largest, double(std::abs(v)));
  const double cpu_error = difference(on_cpu, exact).max, gpu_error = difference(on_gpu, exact).max;
  const double bound = 16 * std::max(cpu_error, 4 * std::ldexp(1.0, -24) * largest);
  if (std::getenv("DDPM_COMPARE_VERBOSE"))
    std::printf("sampling: cuda error %.3g, cpu error %.3g, bound %.3g, max |x| %.3g\n", gpu_error,
                cpu_error, bound, largest);
  EXPECT_LE(gpu_error, bound);
  // The f64 run reads its prediction through the same copy-back path as the
  // CUDA one (the f32 CPU run reads it in place), so a bug there would move
  // both and inflate the bound: the f32 CPU run pins the f64 one down first
  // (measured 1.5e-7 of the largest value; the bound allows ~170 ulps).
  EXPECT_LE(cpu_error, 1e-5 * largest);
  EXPECT_LE(difference(on_gpu, on_cpu).max, bound + cpu_error);
  EXPECT_GT(largest, 1.5);  // the images are not clamped or trivially zero
}

}  // namespace
}  // namespace ddpm
