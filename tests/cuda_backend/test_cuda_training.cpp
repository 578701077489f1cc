// Training and sampling on the CUDA backend against the CPU backend: the
// Trainer with the device training step (engine/cuda/device_training_step.h:
// the batch prepared on the device, the step captured as a CUDA graph, the
// optimizer beside the parameters) and sample_batch with the model on the
// device.
//
// Training tolerances. Both trainers start from the same bits (parameters
// from the seed, the same images, timesteps, flips and dropout masks: the
// kernel tests check those bitwise) and differ by
//   - the batch: the device draws eps by float Box-Muller (within
//     kNormalFloatAbsError = 6.0e-6 of the CPU's double draw, engine/noise.h)
//     and forms x_t and the target in float (a few u); the CPU in double;
//   - fp32 rounding in the model's forward and backward (a few 1e-7 relative
//     to a tensor's largest value, backend_compare.h) and in the optimizer's
//     scalars (float config and norm: 1e-7 relative).
// So
//   - step 1's loss and gradient norm: the loss is a mean of d^2, d = model -
//     target (|d| ~ 1 here), so it moves by about 2 |d| (dt + J dx) where dt,
//     dx <= 6e-6 are the target's and the input's errors and J the model's
//     gain from input to output (O(1) for a freshly initialised UNet; we
//     allow J <= 7): <= 1e-4 absolute on a loss near 1, 1e-4 relative. The
//     gradient norm is a sum over the same d: the same relative bound;
//   - AdamW amplifies gradient differences: at step s an element moves by
//     lr_s m_hat / (sqrt(v_hat) + eps), and where |g| is of the order of its
//     own error that ratio can move by up to 2 lr_s (at step 1 it is
//     sign(g)). Such elements are rare but they exist in every UNet
//     (gradients that cancel across the batch), so the maximum parameter
//     difference is bounded by the sum of the learning rates, S = sum_s lr_s,
//     not by rounding. What a bug does is different: a wrong learning rate,
//     warmup, clip factor or bias correction moves EVERY element by a fraction
//     of lr, and a missing EMA or moment update leaves them at their start.
//     So we check (a) max |dp| <= S, (b) the mean |dp| <= 1e-3 S, which a
//     uniform error of even 0.1% of the update fails, (c) the same for the
//     EMA (a convex mix of the parameters, so the same bounds) and (d) later
//     losses within 1e-3 relative (the parameters differ by far less than an
//     lr step on average).
// Between CUDA runs there is no tolerance: graph on and off, a resumed run
// and an uninterrupted one launch the same deterministic kernels on the same
// bits, so parameters, EMA and every loss are equal bitwise.
//
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
#include <functional>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_parameter_updater.h"
#include "engine/cuda/device_training_step.h"
#include "engine/executor.h"
#include "engine/random.h"
#include "engine/sampler.h"
#include "engine/trainer.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/optimizer_golden.h"
#include "tests/synthetic_images.h"
#include "tests/tiny_unet.h"

#if DDPM_KERNEL_TESTS_EMULATED
#include "kernels/emulation/emulator_api.h"
#endif

namespace ddpm {
namespace {

namespace fs = std::filesystem;

using testing::squares;

// Attention in the mid block only: a few seconds of emulated training.
UNetConfig tiny_model() {
  return testing::tiny_unet(/*attention_in_level_2=*/false, /*head_dim=*/8);
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
  Trainer on_gpu(c, data, gpu, make_cuda_training_step);  // graph on (the default)
  ASSERT_EQ(on_gpu.parameters(), on_cpu.parameters());    // the same initialisation
  ASSERT_EQ(on_gpu.ema(), on_cpu.parameters());

  const fs::path dir =
      fs::temp_directory_path() / ("ddpm_cuda_training_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  double lr_sum = 0;
  std::vector<StepMetrics> gpu_metrics;
  for (int s = 1; s <= kSteps; ++s) {
    const StepMetrics a = on_cpu.train_step(), b = on_gpu.train_step();
    gpu_metrics.push_back(b);
    ASSERT_EQ(b.step, s);
    // Both trainers report warmup_learning_rate() and ema_decay_at(), so they
    // are also held to independent values: LambdaLR's linear warmup,
    // lr min(1, s / warmup_steps) = 2e-3 {1/2, 1, 1}, and diffusers'
    // default EMA warmup, min(0.9, (1 + k) / (10 + k)) with k = s - 1 (0 at k 0).
    constexpr double want_lr[] = {1e-3, 2e-3, 2e-3}, want_decay[] = {0.0, 2.0 / 11, 3.0 / 12};
    static_assert(std::size(want_lr) == kSteps && std::size(want_decay) == kSteps);
    EXPECT_NEAR(a.learning_rate, want_lr[s - 1], 1e-15 * want_lr[s - 1]) << "step " << s;
    EXPECT_NEAR(a.ema_decay, want_decay[s - 1], 1e-15) << "step " << s;
    EXPECT_EQ(b.learning_rate, a.learning_rate);
    EXPECT_EQ(b.ema_decay, a.ema_decay);
    lr_sum += a.learning_rate;
    const double tol = s == 1 ? 1e-4 : 1e-3;
    EXPECT_NEAR(b.loss, a.loss, tol * std::abs(a.loss)) << "step " << s;
    EXPECT_NEAR(b.grad_norm, a.grad_norm, tol * a.grad_norm) << "step " << s;
    EXPECT_GT(a.grad_norm, c.training.grad_clip_norm) << "the test wants clipping active";
    if (std::getenv("DDPM_COMPARE_VERBOSE"))
      std::printf("step %d: loss cpu %.9g cuda %.9g (rel %.3g); norm rel %.3g\n", s, a.loss, b.loss,
                  std::abs(b.loss - a.loss) / a.loss,
                  std::abs(b.grad_norm - a.grad_norm) / a.grad_norm);
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

  // Resumed on the device from the host copies of step kSteps - 1, in a new
  // trainer (its first step eager, as every process's): the same bits as the
  // uninterrupted run, losses included.
  Trainer resumed(c, data, gpu, make_cuda_training_step);
  resumed.resume(dir);
  ASSERT_EQ(resumed.step(), kSteps - 1);
  const StepMetrics last = resumed.train_step();
  EXPECT_EQ(last.step, kSteps);
  EXPECT_EQ(last.loss, gpu_metrics.back().loss);
  EXPECT_EQ(last.grad_norm, gpu_metrics.back().grad_norm);
  EXPECT_EQ(resumed.parameters(), on_gpu.parameters());
  EXPECT_EQ(resumed.ema(), on_gpu.ema());
  fs::remove_all(dir);
}

// Four steps enqueued without reading anything, then their metrics in one
// read: with the step captured once and replayed, and with the same kernels
// launched eagerly. The two runs are the same bits (parameters, EMA, every
// loss and norm). A metrics ring of 3 makes the fourth step read the first
// three back before it overwrites them. Between steps 2 and 3 each run
// samples with its EMA weights at a larger batch, which grows (reallocates)
// the backend's workspace the captured step holds by address: the graph must
// be captured again (a stale one writes freed memory: it crashed the emulated
// run when tried).
TEST(CudaTraining, GraphReplayEqualsEagerLaunchesBitwise) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = squares(6);
  const TrainConfig c = tiny_training();
  constexpr int kSteps = 4;
  struct Run {
    std::vector<StepMetrics> metrics;
    std::vector<float> params, ema, images;
  };
  auto run = [&](bool graph) {
    SCOPED_TRACE(graph ? "graph on" : "graph off");
    CudaBackend gpu;
    TrainingStepOptions o;
    o.graph = graph;
    o.metrics_capacity = 3;
    Trainer t(c, data, gpu, make_cuda_training_step, o);
    Run r;
#if DDPM_KERNEL_TESTS_EMULATED
    uint64_t syncs = 0, graph_launches = 0, captured = 0;
    auto count = [&](const std::function<void()>& f) {
      emu::reset_stats();
      f();
      const emu::Stats s = emu::stats();
      syncs += s.host_synchronizations;
      graph_launches += s.graph_launches;
      captured += s.captured_launches;
    };
#else
    auto count = [](const std::function<void()>& f) { f(); };
#endif
    count([&] {
      t.enqueue_step();
      t.enqueue_step();
    });
    const size_t workspace = gpu.workspace_capacity();
    r.images = t.sample_ema(8, 1, "ddpm", 5);
    EXPECT_GT(gpu.workspace_capacity(), workspace) << "the test wants the workspace to grow";
    count([&] {
      t.enqueue_step();
      t.enqueue_step();
    });
#if DDPM_KERNEL_TESTS_EMULATED
    // The steps' only host waits are outside them: the batch gatherer's wait
    // before reusing a pinned buffer (steps 2.. gather their successor's
    // images into the buffer of two steps back: at most kSteps - 1), and the
    // metrics ring's read before step 4 overwrites step 1's slot (one).
    // Step 1 runs eagerly in both modes; with the graph, steps 2..4 are
    // replays of a capture (made in global mode, where the driver, and the
    // emulator, refuse any synchronisation, copy to the host or allocation),
    // captured twice: at step 2 and after the workspace grew.
    if (std::getenv("DDPM_COMPARE_VERBOSE"))
      std::printf("graph %s: %llu host synchronisations, %llu graph launches, %llu captured\n",
                  graph ? "on" : "off", (unsigned long long)syncs,
                  (unsigned long long)graph_launches, (unsigned long long)captured);
    EXPECT_LE(syncs, uint64_t(kSteps - 1 + 1));
    EXPECT_EQ(graph_launches, graph ? uint64_t(kSteps - 1) : 0u);
    if (graph) {
      EXPECT_GT(captured, 20u);
    } else {
      EXPECT_EQ(captured, 0u);
    }
#endif
    r.metrics = t.collect_metrics();
    r.params = t.parameters();
    r.ema = t.ema();
    return r;
  };
  const Run eager = run(false), replayed = run(true);
  ASSERT_EQ(eager.metrics.size(), size_t(kSteps));
  ASSERT_EQ(replayed.metrics.size(), size_t(kSteps));
  for (int s = 0; s < kSteps; ++s) {
    SCOPED_TRACE("step " + std::to_string(s + 1));
    EXPECT_EQ(replayed.metrics[size_t(s)].step, s + 1);
    EXPECT_EQ(eager.metrics[size_t(s)].step, s + 1);
    EXPECT_EQ(replayed.metrics[size_t(s)].loss, eager.metrics[size_t(s)].loss);
    EXPECT_EQ(replayed.metrics[size_t(s)].grad_norm, eager.metrics[size_t(s)].grad_norm);
    EXPECT_TRUE(std::isfinite(eager.metrics[size_t(s)].loss));
  }
  // Every step differs from the one before (a replay that re-ran step 2's
  // draws, or did not advance, would repeat a loss).
  for (int s = 1; s < kSteps; ++s)
    EXPECT_NE(replayed.metrics[size_t(s)].loss, replayed.metrics[size_t(s - 1)].loss);
  EXPECT_EQ(replayed.params, eager.params);
  EXPECT_EQ(replayed.ema, eager.ema);
  EXPECT_EQ(replayed.images, eager.images);
}

// The device-side optimizer step (its EMA decay computed on the device from the
// step counter) against PyTorch's AdamW and diffusers' EMAModel.
TEST(CudaTraining, UpdaterMatchesTorchAdamWAndDiffusersEma) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  testing::expect_updater_matches_golden(gpu, make_cuda_parameter_updater);
}

TEST(CudaTraining, UpdaterSkipsNonFiniteGradients) {
  DDPM_REQUIRE_DEVICE();
  CudaBackend gpu;
  testing::expect_updater_skips_non_finite_gradients(gpu, make_cuda_parameter_updater);
}

TEST(CudaTraining, TrainerWithoutStepRejectsTheCudaBackend) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = squares(2);
  CudaBackend gpu;
  EXPECT_THROW(Trainer(tiny_training(), data, gpu), std::logic_error);
  CpuBackend cpu;
  EXPECT_THROW(Trainer(tiny_training(), data, cpu, make_cuda_training_step), std::invalid_argument);
  EXPECT_THROW(Trainer(tiny_training(), data, gpu, make_cpu_training_step), std::invalid_argument);
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
  // |cuda - cpu32| <= gpu_error + cpu_error holds by the triangle inequality
  // whenever the two checks above pass, so it is not asserted (it could not fail).
  EXPECT_GT(largest, 1.5);  // the images are not clamped or trivially zero
}

}  // namespace
}  // namespace ddpm
