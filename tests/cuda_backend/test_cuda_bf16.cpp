// Mixed precision on the CUDA backend (issue 11): a UNet built with bf16
// activations (bf16 activations and activation gradients, fp32 master
// weights and their gradients, fp32 statistics and loss) against the CPU
// backend in f64 and f32, through the executor, the device training step
// and the device sampling loop.
//
// The bound of the whole-model comparison (backend_compare.h's rule with a
// larger F): the bf16 run is the exact computation perturbed by a relative
// error of at most u_bf16 = 2^-8 (8 significant bits, round to nearest)
// wherever it rounds to bf16 (its inputs and
// weights, every op's output and every activation gradient), the fp32 CPU run
// the same computation perturbed by u = 2^-24 wherever it rounds (every
// product and sum). To first order each error is linear in its
// perturbations, and the fp32 run rounds at least wherever the bf16 run
// does (the bf16 kernels accumulate in fp32), so the bf16 error is at most
// u_bf16 / u = 2^16 times the scale the CPU's measured error gives, times
// backend_compare's F = 16 for different orders: F = 2^20. Its floor is
// 2^20 * 4u = 2^-2 of the tensor's largest value. Measured under the
// emulator (DDPM_COMPARE_VERBOSE=1): every tensor within 0.04 of its bound
// (the prediction 0.015 of it). A wrong index, a dropped tile, an fp32 weight
// read as bf16 or a gradient written to the wrong slot gives errors of the
// size of the values (checked with planted bugs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_sampler.h"
#include "engine/cuda/device_training_step.h"
#include "engine/executor.h"
#include "engine/trainer.h"
#include "engine/unet.h"
#include "tests/cuda_backend/backend_compare.h"
#include "tests/kernels/kernel_test_util.h"
#include "tests/synthetic_images.h"
#include "tests/tiny_unet.h"

namespace ddpm {
namespace {

using testing::compare_backends;
using testing::CompareOptions;

constexpr double kBf16Factor = 0x1p20;  // u_bf16 / u = 2^16, times F = 16: see the top

UNetConfig model() {
  UNetConfig c = testing::tiny_unet(/*attention_in_level_2=*/true, /*head_dim=*/8);
  c.in_channels = c.out_channels = 3;
  return c;
}

UNetBuildOptions options(int64_t batch, DType dtype, DType activations) {
  UNetBuildOptions o;
  o.batch = batch;
  o.with_loss = true;
  o.dtype = dtype;
  o.activations = activations;
  return o;
}

CompareOptions bf16_comparison(int64_t batch) {
  CompareOptions o;
  o.factor = kBf16Factor;
  o.input_values = [](const std::string& name, int64_t n) {
    std::vector<double> v;
    if (name == "timesteps")
      for (int64_t i = 0; i < n; ++i) v.push_back(double(113 + 401 * i));
    return v;
  };
  o.build_cuda = [batch] {
    return build_unet(model(), options(batch, DType::f32, DType::bf16)).graph;
  };
  return o;
}

auto reference_builder(int64_t batch) {
  return [batch](DType dtype) { return build_unet(model(), options(batch, dtype, dtype)).graph; };
}

// What the builder makes of a UNet with bf16 activations: the dtype of each
// kind of value, which no device is needed to check.
TEST(MixedPrecisionGraph, UNetValuesTakeTheirDtypes) {
  const UNetGraph u = build_unet(model(), options(2, DType::f32, DType::bf16));
  const Graph& g = u.graph;
  auto dtype = [&](const std::string& name) { return g.values[size_t(g.find(name))].dtype; };
  EXPECT_EQ(g.dtype, DType::f32);
  EXPECT_EQ(dtype("sample"), DType::bf16);
  EXPECT_EQ(dtype("timesteps"), DType::f32);
  EXPECT_EQ(dtype("target"), DType::f32);
  EXPECT_EQ(g.values[size_t(u.prediction)].dtype, DType::bf16);
  EXPECT_EQ(g.values[size_t(u.loss)].dtype, DType::f32);
  // Conv and linear weights read by bf16 ops: bf16 copies; biases, norms fp32.
  EXPECT_EQ(dtype("conv_in.weight"), DType::bf16);
  EXPECT_EQ(dtype("conv_in.bias"), DType::f32);
  EXPECT_EQ(dtype("mid_block.attentions.0.to_q.weight"), DType::bf16);
  EXPECT_EQ(dtype("mid_block.attentions.0.to_v.weight"), DType::bf16);
  EXPECT_EQ(dtype("mid_block.attentions.0.group_norm.weight"), DType::f32);
  // The time path stays fp32, its weights too (GroupNorm adds it in fp32).
  EXPECT_EQ(dtype("time_embedding.linear_1.weight"), DType::f32);
  EXPECT_EQ(dtype("down_blocks.0.resnets.0.time_emb_proj"), DType::f32);
  EXPECT_EQ(dtype("down_blocks.0.resnets.0.time_emb_proj.weight"), DType::f32);
  // GroupNorm's statistics and attention's log-sum-exp are fp32.
  EXPECT_EQ(dtype("down_blocks.0.resnets.0.norm1:1"), DType::f32);
  EXPECT_EQ(dtype("mid_block.attentions.0.attention"), DType::bf16);
  EXPECT_EQ(dtype("mid_block.attentions.0.attention:1"), DType::f32);
  EXPECT_TRUE(g.has_parameter_copy());
  // The activations take about half the memory of the fp32 graph's.
  const Graph f32 = build_unet(model(), options(2, DType::f32, DType::f32)).graph;
  const MemoryPlan mixed = plan_memory(g, ExecMode::training);
  const MemoryPlan full = plan_memory(f32, ExecMode::training);
  EXPECT_LT(mixed.unshared_bytes, full.unshared_bytes * 3 / 5);
  EXPECT_GT(mixed.unshared_bytes, full.unshared_bytes * 2 / 5);
}

TEST(MixedPrecisionGraph, RejectsWhatItCannotRun) {
  // bf16 activations are built fused only (the unfused time add would mix dtypes).
  UNetBuildOptions o = options(1, DType::f32, DType::bf16);
  o.fuse = false;
  EXPECT_THROW(build_unet(model(), o), ConfigError);
  EXPECT_THROW(GraphBuilder(DType::f64, DType::bf16), std::invalid_argument);
  // A GroupNorm add in bf16, an add of a bf16 and an fp32 value.
  GraphBuilder b(DType::f32, DType::bf16);
  const ValueId x = b.input("x", Shape{1, 2, 2, 4});
  const ValueId t = b.input("t", Shape{1, 4}, false, DType::f32);
  EXPECT_THROW(b.add("mixed", x, t), std::invalid_argument);
  EXPECT_THROW(b.group_norm("gn", x, {2, 1e-5, true, false}, b.input("c", Shape{1, 4})),
               std::invalid_argument);
  // The CPU backend computes in f32/f64 only, and says so.
  const Graph g = build_unet(model(), options(1, DType::f32, DType::bf16)).graph;
  CpuBackend cpu;
  try {
    Executor ex(g, cpu, ExecMode::inference);
    FAIL() << "the CPU backend accepted a bf16 graph";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bf16"), std::string::npos) << e.what();
  }
}

// The bf16 copy of the weights follows the master through write() and
// refresh_parameter_copy().
TEST(MixedPrecisionGraph, ParameterCopyFollowsTheMaster) {
  DDPM_REQUIRE_DEVICE();
  const UNetGraph u = build_unet(model(), options(1, DType::f32, DType::bf16));
  CudaBackend gpu;
  Executor ex(u.graph, gpu, ExecMode::inference);
  ex.init_parameters(5);
  const ValueId w = u.graph.find("conv_in.weight");
  ASSERT_EQ(ex.value(w).dtype, DType::bf16);
  const Value& wv = u.graph.values[size_t(w)];
  const std::vector<float> flat = ex.read(ex.parameters());
  const std::vector<float> master(flat.begin() + wv.param_offset,
                                  flat.begin() + wv.param_offset + wv.shape.numel());
  const std::vector<float> copy = ex.read(ex.value(w));
  ASSERT_EQ(copy.size(), master.size());
  double largest_gap = 0;
  for (size_t i = 0; i < copy.size(); ++i) {
    // Nearest-even rounding to 8 significant bits: within 2^-8 relative.
    EXPECT_LE(std::abs(copy[i] - master[i]), std::ldexp(std::abs(master[i]), -8)) << i;
    largest_gap = std::max(largest_gap, double(std::abs(copy[i] - master[i])));
  }
  EXPECT_GT(largest_gap, 0) << "the copy is not rounded: is it bf16 at all?";
  // Writing the master directly, then refreshing: the copy follows (a kernel).
  std::vector<float> all = ex.read(ex.parameters());
  for (float& v : all) v = 0.375f;  // exact in bf16
  gpu.copy_from_host(ex.parameters().data, all.data(), all.size() * sizeof(float));
  ex.refresh_parameter_copy();
  for (float v : ex.read(ex.value(w))) ASSERT_EQ(v, 0.375f);
}

TEST(MixedPrecisionUNet, TrainingStepWithinTheBf16BoundOfF64) {
  DDPM_REQUIRE_DEVICE();
  const auto comparisons = compare_backends(reference_builder(2), bf16_comparison(2));
  EXPECT_GT(comparisons.size(), 40u);  // prediction, loss and every parameter gradient
}

TEST(MixedPrecisionUNet, InferenceWithinTheBf16BoundOfF64) {
  DDPM_REQUIRE_DEVICE();
  CompareOptions o = bf16_comparison(3);
  o.mode = ExecMode::inference;
  o.build_cuda = [] {
    UNetBuildOptions b = options(3, DType::f32, DType::bf16);
    return build_unet(model(), b).graph;
  };
  compare_backends(reference_builder(3), o);
}

// Each op's bf16 rule on its own (slots, stacked parts, fused residual and
// channel add, accumulate flags, input gradients), in graphs of one or two
// ops, with every bf16 value and weight bf16-exact for all three runs. The
// bf16 roundings left are those of the ops' outputs and of the gradients
// flowing back: on any path through two ops, at most four relative errors
// of 2^-8 (two outputs forward, two gradients back); the rest is fp32
// accumulation, the CPU's own error class. The floor F 4u |y|max must cover
// 4 * 2^-8: F = 2^-6 / 2^-22 = 2^16. Measured under the emulator: every
// tensor within 0.41 of this bound; a linear bias gradient summed over one
// row too few (a planted bug) exceeds it.
using OpGraph = std::function<void(GraphBuilder&, DType activations)>;

void compare_op(const OpGraph& body) {
  auto build = [body](DType dtype, DType activations) {
    GraphBuilder b(dtype, activations);
    body(b, activations);
    return b.finish();
  };
  CompareOptions o;
  o.factor = 0x1p16;  // four bf16 roundings on a path: see above
  o.build_cuda = [build] { return build(DType::f32, DType::bf16); };
  compare_backends([build](DType dtype) { return build(dtype, dtype); }, o);
}

// pred [*, C] against an fp32 target: the loss every op graph ends in.
void finish_with_loss(GraphBuilder& b, ValueId pred) {
  const ValueId target = b.input("target", b.shape(pred), false, b.graph().dtype);
  b.set_loss(b.mse_loss("loss", pred, target));
}

TEST(MixedPrecisionOps, LinearStackedWithBiasAndResidual) {
  DDPM_REQUIRE_DEVICE();
  compare_op([](GraphBuilder& b, DType) {
    const ValueId x = b.input("x", Shape{2, 4, 4, 16}, true);
    const ValueId qkv = b.linear_stacked("qkv", x, {"q", "k", "v"}, LinearParams{48});
    const ValueId y = b.linear("out", qkv, LinearParams{16}, x);  // residual x: dx adds twice
    finish_with_loss(b, y);
  });
}

TEST(MixedPrecisionOps, ConvWithBiasAndResidualAtStrideTwo) {
  DDPM_REQUIRE_DEVICE();
  compare_op([](GraphBuilder& b, DType) {
    const ValueId x = b.input("x", Shape{2, 6, 6, 8}, true);
    Conv2dParams down;
    down.out_channels = 16;
    down.stride = 2;
    down.pad = Padding2d::same(1);
    const ValueId h = b.conv2d("down", x, down);
    Conv2dParams same;
    same.out_channels = 16;
    same.pad = Padding2d::same(1);
    finish_with_loss(b, b.conv2d("conv", h, same, h));  // residual h
  });
}

TEST(MixedPrecisionOps, GroupNormSiluWithFp32ChannelAddAndConcatUpsample) {
  DDPM_REQUIRE_DEVICE();
  compare_op([](GraphBuilder& b, DType) {
    const ValueId x = b.input("x", Shape{2, 4, 4, 16}, true);
    const ValueId t = b.input("t", Shape{2, 16}, true, b.graph().dtype);  // the fp32 time path
    const ValueId h = b.group_norm("gn", x, {4, 1e-5, true, true}, t);
    const ValueId c = b.concat("cat", {h, x});
    finish_with_loss(b, b.upsample2x("up", b.silu("act", b.add("sum", c, c, 0.5))));
  });
}

TEST(MixedPrecisionOps, PackedAttentionTwoHeads) {
  DDPM_REQUIRE_DEVICE();
  compare_op([](GraphBuilder& b, DType) {
    const ValueId x = b.input("x", Shape{2, 3, 5, 16}, true);
    const ValueId qkv = b.linear_stacked("qkv", x, {"q", "k", "v"}, LinearParams{48, false});
    finish_with_loss(b, b.attention_packed("attn", qkv, AttentionParams{2, 8}));
  });
}

// A short training run: the bf16 loss curve tracks the fp32 one. Both start
// from the same weights and see the same batches and noise; they drift apart
// by the rounding of the bf16 run, so each step's loss is compared against
// the step's own fp32 loss with a relative slack (measured: see below).
TEST(MixedPrecisionTraining, LossCurveTracksFp32) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = testing::squares(8);
  TrainConfig c;
  c.model = testing::tiny_unet(/*attention_in_level_2=*/false, /*head_dim=*/8);
  c.training.batch_size = 4;
  c.training.learning_rate = 2e-3;
  c.training.warmup_steps = 2;
  c.training.seed = 3;
  constexpr int kSteps = 12;
  std::vector<double> loss[2];
  std::vector<float> ema[2];
  for (int run = 0; run < 2; ++run) {
    c.training.precision = run == 0 ? "fp32" : "bf16";
    CudaBackend gpu;
    Trainer t(c, data, gpu, make_cuda_training_step);
    for (int s = 0; s < kSteps; ++s) loss[run].push_back(t.train_step().loss);
    ema[run] = t.ema();
  }
  double worst = 0, first_mean = 0, last_mean = 0;
  for (int s = 0; s < kSteps; ++s) {
    const double rel = std::abs(loss[1][s] - loss[0][s]) / loss[0][s];
    worst = std::max(worst, rel);
    if (std::getenv("DDPM_COMPARE_VERBOSE"))
      std::printf("step %2d  fp32 %.6f  bf16 %.6f  rel %.2e\n", s + 1, loss[0][s], loss[1][s], rel);
    if (s < 4) first_mean += loss[1][s] / 4;
    if (s >= kSteps - 4) last_mean += loss[1][s] / 4;
  }
  // The same batch and noise at each step: the losses differ by the bf16
  // rounding of the prediction (up to 2^-8 relative per element, averaging
  // down in the mean) plus the drift of the weights. Measured under the
  // emulator: at most 1.6e-3 relative over these 12 steps; 1% allows 6x that
  // for a GPU's other summation orders.
  EXPECT_LT(worst, 0.01);
  EXPECT_NE(loss[0], loss[1]) << "the bf16 run computed exactly the fp32 losses: is it bf16?";
  EXPECT_LT(last_mean, first_mean) << "the bf16 run does not learn";
  // The weights (fp32 masters) stay close too: the EMA after the run.
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ema[0].size(); ++i) {
    diff = std::max(diff, double(std::abs(ema[0][i] - ema[1][i])));
    scale = std::max(scale, double(std::abs(ema[0][i])));
  }
  EXPECT_LT(diff, 0.05 * scale);
}

// The captured step and sampling loop replay the eager launches bit for bit
// in bf16 too.
TEST(MixedPrecisionTraining, GraphModesAreBitwiseEqual) {
  DDPM_REQUIRE_DEVICE();
  const ImageDataset data = testing::squares(6);
  TrainConfig c;
  c.model = testing::tiny_unet(/*attention_in_level_2=*/false, /*head_dim=*/8);
  c.training.batch_size = 2;
  c.training.seed = 9;
  c.training.precision = "bf16";
  std::vector<float> params[2], images[3];
  std::vector<double> losses[2];
  for (int graph = 0; graph < 2; ++graph) {
    CudaBackend gpu;
    TrainingStepOptions o;
    o.graph = graph == 1;
    Trainer t(c, data, gpu, make_cuda_training_step, o);
    for (int s = 0; s < 3; ++s) losses[graph].push_back(t.train_step().loss);
    params[graph] = t.parameters();
  }
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_TRUE(params[0] == params[1]);

  UNetBuildOptions b;
  b.batch = 2;
  b.activations = DType::bf16;
  const UNetGraph u = build_unet(c.model, b);
  CudaBackend gpu;
  Executor ex(u.graph, gpu, ExecMode::inference);
  ex.init_parameters(4);
  const auto loop = make_cuda_sampling_loop(ex, u);
  SchedulerConfig sc;
  sc.kind = "ddpm";
  const Scheduler scheduler(sc);
  const SamplingGraph modes[3] = {SamplingGraph::off, SamplingGraph::step, SamplingGraph::loop};
  for (int m = 0; m < 3; ++m) {
    SamplerOptions so;
    so.steps = 3;
    so.seed = 2;
    so.graph = modes[m];
    loop->sample(scheduler, so, images[m]);
  }
  ASSERT_EQ(images[0].size(), size_t(2 * 8 * 8));
  EXPECT_TRUE(images[0] == images[1]);
  EXPECT_TRUE(images[0] == images[2]);
  for (float v : images[0]) ASSERT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace ddpm
