// The executor end to end on the CPU backend: whole-graph gradients against
// finite differences, training to a low loss, determinism and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/optimizer.h"
#include "engine/executor.h"
#include "engine/random.h"
#include "engine/tiny_denoiser.h"
#include "engine/unet.h"

namespace ddpm {
namespace {

// Two levels with attention in both (two heads), ResBlocks whose channels
// change (a 1x1 shortcut) and ones whose do not.
UNetConfig small_unet_config() {
  UNetConfig c;
  c.sample_size = c.sample_height = c.sample_width = 8;
  c.block_out_channels = {8, 16};
  c.layers_per_block = 1;
  c.down_block_types = {"AttnDownBlock2D", "AttnDownBlock2D"};
  c.up_block_types = {"AttnUpBlock2D", "AttnUpBlock2D"};
  c.norm_num_groups = 4;
  c.attention_head_dim = 4;
  return c;
}

std::vector<double> normal_vector(size_t n, uint64_t seed, uint64_t stream, double scale = 1) {
  Philox rng(seed, stream);
  std::vector<double> v(n);
  for (double& x : v) x = scale * rng.normal();
  return v;
}

void fill_tiny_inputs(Executor& ex, const TinyDenoiser& m, uint64_t seed) {
  const Graph& g = m.graph;
  ex.write(m.x_t, normal_vector(size_t(g.values[size_t(m.x_t)].shape.numel()), seed, 1));
  ex.write(m.target, normal_vector(size_t(g.values[size_t(m.target)].shape.numel()), seed, 2));
  std::vector<double> t(size_t(g.values[size_t(m.timesteps)].shape.numel()));
  for (size_t i = 0; i < t.size(); ++i) t[i] = double(37 * i + 11);
  ex.write(m.timesteps, t);
}

// Every parameter tensor and the input of the tiny denoiser (which uses every
// op, fan-out, the broadcast add and dropout) against central differences in
// double. Tolerance as in the single-op checks (op_harness.h): both error
// terms are ~1e-10 for this O(1) loss.
TEST(Executor, WholeGraphGradientMatchesFiniteDifferences) {
  TinyDenoiserConfig c;
  c.batch = 2;
  c.size = 6;
  c.width = 8;
  c.groups = 2;
  c.dropout = 0.2;
  c.input_requires_grad = true;
  const TinyDenoiser m = build_tiny_denoiser(c, DType::f64);
  CpuBackend cpu;
  Executor ex(m.graph, cpu, ExecMode::training);
  ex.init_parameters(5);
  fill_tiny_inputs(ex, m, 5);
  const RunContext ctx{99, 3, true};
  ex.forward(ctx);
  ex.backward(ctx);

  std::vector<ValueId> checked = m.graph.parameters();
  checked.push_back(m.x_t);
  auto loss = [&]() {
    ex.forward(ctx);
    return ex.read<double>(ex.value(m.loss))[0];
  };
  // Input gradients share arena space with forward activations: read them all
  // before the finite differences run forward again.
  std::vector<std::vector<double>> analytic_all;
  for (ValueId v : checked) analytic_all.push_back(ex.read<double>(ex.grad(v)));
  const double h = 1e-5;
  for (size_t i = 0; i < checked.size(); ++i) {
    const ValueId v = checked[i];
    const std::vector<double>& analytic = analytic_all[i];
    const Tensor t = ex.value(v);
    double* p = t.ptr<double>();
    Philox pick(7, uint64_t(v));
    for (int k = 0; k < 3; ++k) {
      const auto e = size_t(pick.below(uint64_t(t.numel())));
      // x_t is an input: its arena slot is written by the caller and never reused.
      const double x0 = p[e];
      p[e] = x0 + h;
      const double lp = loss();
      p[e] = x0 - h;
      const double lm = loss();
      p[e] = x0;
      const double numeric = (lp - lm) / (2 * h);
      EXPECT_NEAR(analytic[e], numeric, 1e-6 * (1 + std::abs(numeric)))
          << m.graph.values[size_t(v)].name << " element " << e;
    }
  }
}

TEST(Executor, FanOutGradientsAccumulate) {
  GraphBuilder b(DType::f64);
  const ValueId x = b.input("x", Shape{3}, true);
  const ValueId y = b.add("twice", x, x);
  const ValueId target = b.input("target", Shape{3});
  b.set_loss(b.mse_loss("loss", b.add("thrice", y, x), target));
  const Graph g = b.finish();
  CpuBackend cpu;
  Executor ex(g, cpu, ExecMode::training);
  ex.write(x, std::vector<double>{1, 2, 3});
  ex.write(target, std::vector<double>{0, 0, 0});
  ex.forward({});
  ex.backward({});
  // L = mean((3x)^2) -> dL/dx = 2 * 3x * 3 / 3 = 6x.
  EXPECT_EQ(ex.read<double>(ex.grad(x)), (std::vector<double>{6, 12, 18}));
}

TEST(Executor, IsDeterministicAndInferenceMatchesTrainingForward) {
  TinyDenoiserConfig c;
  c.batch = 2;
  c.size = 8;
  c.dropout = 0;
  const TinyDenoiser m = build_tiny_denoiser(c);
  CpuBackend cpu;
  Executor train(m.graph, cpu, ExecMode::training), infer(m.graph, cpu, ExecMode::inference);
  for (Executor* ex : {&train, &infer}) {
    ex->init_parameters(3);
    fill_tiny_inputs(*ex, m, 3);
    ex->forward({1, 1});
  }
  const auto a = train.read(train.value(m.prediction));
  EXPECT_EQ(a, infer.read(infer.value(m.prediction)));
  train.backward({1, 1});
  const auto g1 = train.read(train.gradients());
  fill_tiny_inputs(train, m, 3);
  train.forward({1, 1});
  train.backward({1, 1});
  EXPECT_EQ(train.read(train.gradients()), g1);  // bitwise, and zeroed between steps
}

// A two-layer conv net learns a fixed random linear "teacher" convolution
// with hand-written SGD: the loss must fall below 2% of where it started.
TEST(Executor, TinyRegressionTrainsToLowLossWithSgd) {
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{4, 6, 6, 3});
  const ValueId target = b.input("target", Shape{4, 6, 6, 2});
  ValueId h = b.conv2d("conv1", x, Conv2dParams{8, 3, 3, 1, Padding2d::same(1)});
  h = b.group_norm("norm", h, GroupNormParams{2, 1e-5, true, true});
  h = b.conv2d("conv2", h, Conv2dParams{2, 1, 1, 1, {}});
  const ValueId loss = b.mse_loss(
      "loss", b.add("skip", h, b.conv2d("lin", x, Conv2dParams{2, 3, 3, 1, Padding2d::same(1)})),
      target);
  b.set_loss(loss);
  const Graph g = b.finish();
  CpuBackend cpu;
  Executor ex(g, cpu, ExecMode::training);
  ex.init_parameters(11);

  // The teacher: a random 3x3 convolution of the same input.
  GraphBuilder tb;
  const ValueId tx = tb.input("x", Shape{4, 6, 6, 3});
  tb.mark_output(tb.conv2d("teacher", tx, Conv2dParams{2, 3, 3, 1, Padding2d::same(1)}));
  const Graph tg = tb.finish();
  Executor teacher(tg, cpu, ExecMode::inference);
  teacher.init_parameters(12);

  const std::vector<double> xs = normal_vector(4 * 6 * 6 * 3, 13, 0);
  teacher.write(tx, xs);
  teacher.forward({});
  const std::vector<float> ys = teacher.read(teacher.value(tg.find("teacher")));
  ex.write(x, xs);
  ex.write(target, ys);

  double first = 0, last = 0;
  const Tensor p = ex.parameters(), gr = ex.gradients();
  for (int step = 0; step < 400; ++step) {
    ex.forward({});
    ex.backward({});
    last = ex.read(ex.value(loss))[0];
    if (step == 0) first = last;
    float* pp = p.ptr<float>();
    const float* gg = gr.ptr<float>();
    for (int64_t i = 0; i < p.numel(); ++i) pp[i] -= 0.1f * gg[i];  // plain SGD
  }
  EXPECT_LT(last, 0.02 * first) << "first " << first << " last " << last;
}

TEST(Executor, AdamWTrainsTheTinyDenoiserOnAFixedBatch) {
  TinyDenoiserConfig c;
  c.batch = 2;
  c.size = 8;
  c.width = 16;
  c.dropout = 0;
  const TinyDenoiser m = build_tiny_denoiser(c);
  CpuBackend cpu;
  Executor ex(m.graph, cpu, ExecMode::training);
  ex.init_parameters(21);
  fill_tiny_inputs(ex, m, 21);
  const int64_t n = ex.parameters().numel();
  std::vector<float> mom(static_cast<size_t>(n)), var(static_cast<size_t>(n));
  AdamWConfig adam;
  adam.lr = 3e-3;
  double first = 0, last = 0;
  for (int step = 1; step <= 150; ++step) {
    ex.forward({});
    ex.backward({});
    last = ex.read(ex.value(m.loss))[0];
    if (step == 1) first = last;
    cpu::adamw_step(ex.parameters().ptr<float>(), ex.gradients().ptr<float>(), mom.data(),
                    var.data(), n, adam, step);
  }
  // Memorising one batch of noise targets: the loss must fall by 10x.
  EXPECT_LT(last, 0.1 * first) << "first " << first << " last " << last;
}

// In inference the executor skips the elided dropout (its output is its
// input's memory): the prediction equals a training-mode forward of the same
// model without dropout, bit for bit.
TEST(Executor, InferenceSkipsDropout) {
  TinyDenoiserConfig c;
  c.batch = 2;
  c.size = 8;
  c.dropout = 0.3;
  const TinyDenoiser with = build_tiny_denoiser(c);
  c.dropout = 0;
  const TinyDenoiser without = build_tiny_denoiser(c);
  CpuBackend cpu;
  Executor infer(with.graph, cpu, ExecMode::inference);
  Executor reference(without.graph, cpu, ExecMode::training);
  for (auto [ex, m] : {std::pair{&infer, &with}, std::pair{&reference, &without}}) {
    ex->init_parameters(3);
    fill_tiny_inputs(*ex, *m, 3);
    ex->forward({1, 1});
  }
  EXPECT_EQ(infer.read(infer.value(with.prediction)),
            reference.read(reference.value(without.prediction)));
}

// The fused UNet (conv + residual, GroupNorm + time-embedding add, one QKV
// GEMM read in place by attention, linear + residual) against the unfused
// one with the same named parameters, in f64 on the CPU. The same function
// with the same operations, except that the GEMMs see other leading
// dimensions: the prediction, the loss and every parameter gradient agree to
// ~1e-15 relative; 1e-12 of each tensor's largest value leaves room for the
// 10^3-term sums of the weight gradients. Output scale factors 1 (all fused)
// and 1.5 (the mid block keeps its adds, as in tests/golden/unet_heads).
TEST(Executor, FusedUNetMatchesUnfusedUNet) {
  for (double mid_scale : {1.0, 1.5}) {
    SCOPED_TRACE("mid_block_scale_factor " + std::to_string(mid_scale));
    UNetConfig c = small_unet_config();
    c.mid_block_scale_factor = mid_scale;
    c.dropout = 0.2;  // the same masks in both graphs (the same salts)
    UNetBuildOptions o;
    o.batch = 2;
    o.with_loss = true;
    o.dtype = DType::f64;
    const UNetGraph fused = build_unet(c, o);
    o.fuse = false;
    const UNetGraph unfused = build_unet(c, o);
    EXPECT_LT(fused.graph.nodes.size(), unfused.graph.nodes.size());
    EXPECT_EQ(fused.graph.num_parameters, unfused.graph.num_parameters);
    const auto params = unfused.graph.parameters();
    ASSERT_EQ(params.size(), fused.graph.parameters().size());
    CpuBackend cpu;
    Executor ef(fused.graph, cpu, ExecMode::training), eu(unfused.graph, cpu, ExecMode::training);
    ef.init_parameters(5);
    eu.init_parameters(5);
    for (size_t i = 0; i < params.size(); ++i) {  // same names, order and initialisation
      const std::string& name = unfused.graph.values[size_t(params[i])].name;
      ASSERT_EQ(fused.graph.values[size_t(fused.graph.parameters()[i])].name, name);
      ASSERT_EQ(ef.read<double>(ef.value(name)), eu.read<double>(eu.value(params[i]))) << name;
    }
    for (auto [ex, u] : {std::pair{&ef, &fused}, std::pair{&eu, &unfused}}) {
      const Graph& g = u->graph;
      ex->write(u->sample, normal_vector(size_t(g.values[size_t(u->sample)].shape.numel()), 8, 1));
      ex->write(u->timesteps, std::vector<double>{17, 930});
      ex->write(u->target, normal_vector(size_t(g.values[size_t(u->target)].shape.numel()), 8, 2));
      ex->forward({4, 4});
      ex->backward({4, 4});
    }
    // Gradients that vanish in exact arithmetic (the key bias: softmax ignores
    // what it adds to a whole row of scores) are rounding noise in both
    // graphs; they are held to 1e-3 of the largest gradient's scale instead,
    // as in test_unet_parity.cpp.
    double grad_scale = 0;
    for (double g : eu.read<double>(eu.gradients())) grad_scale = std::max(grad_scale, std::abs(g));
    auto expect_close = [&](const std::vector<double>& got, const std::vector<double>& want,
                            const std::string& what) {
      ASSERT_EQ(got.size(), want.size()) << what;
      double scale = 1e-3 * grad_scale;
      for (double w : want) scale = std::max(scale, std::abs(w));
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_NEAR(got[i], want[i], 1e-12 * scale) << what << " element " << i;
    };
    expect_close(ef.read<double>(ef.value(fused.prediction)),
                 eu.read<double>(eu.value(unfused.prediction)), "prediction");
    expect_close(ef.read<double>(ef.value(fused.loss)), eu.read<double>(eu.value(unfused.loss)),
                 "loss");
    for (ValueId p : params) {
      const std::string& name = unfused.graph.values[size_t(p)].name;
      expect_close(ef.read<double>(ef.grad(name)), eu.read<double>(eu.grad(p)), "gradient " + name);
    }
  }
}

// --check-numerics names the first op that writes a non-finite value (here a
// linear layer whose product overflows float; the backward checks each
// gradient written with the same function); a NaN input is named before any
// op runs.
TEST(Executor, CheckNumericsNamesTheFirstNonFiniteOp) {
  GraphBuilder b;
  const ValueId x = b.input("x", Shape{2, 3});
  const ValueId t = b.input("t", Shape{2, 4});
  const ValueId h = b.linear("first", x, LinearParams{4});
  const ValueId y = b.linear("second", h, LinearParams{4});
  b.set_loss(b.mse_loss("loss", y, t));
  const Graph g = b.finish();
  CpuBackend cpu;
  Executor ex(g, cpu, ExecMode::training);
  ex.init_parameters(1);
  ex.write(x, std::vector<float>(6, 1.0f));
  ex.write(t, std::vector<float>(8, 0.0f));
  const RunContext ctx{1, 1, true};
  ex.forward(ctx);  // off: nothing checked, nothing thrown
  ex.set_check_numerics(true);
  ex.forward(ctx);
  ex.backward(ctx);  // finite everywhere: no error

  auto message = [&](auto&& run) -> std::string {
    try {
      run();
    } catch (const NumericsError& e) {
      return e.what();
    }
    ADD_FAILURE() << "no NumericsError";
    return "";
  };
  // 1e30 * 1e30 overflows in 'second' (its input is finite: 'first' is not named).
  std::vector<float> w(16, 1e30f);
  ex.write(g.find("second.weight"), w);
  ex.write(x, std::vector<float>(6, 1e10f));
  ex.write(g.find("first.weight"), std::vector<float>(12, 1e10f));
  EXPECT_NE(message([&] { ex.forward(ctx); }).find("the forward of 'second' (linear)"),
            std::string::npos);
  // A NaN input is named before the ops run.
  ex.write(x, std::vector<float>{1, 2, std::nanf(""), 4, 5, 6});
  EXPECT_NE(message([&] { ex.forward(ctx); }).find("input 'x' holds nan at element 2"),
            std::string::npos);
}

TEST(Executor, ErrorsNameWhatWentWrong) {
  const TinyDenoiser m = build_tiny_denoiser({});
  CpuBackend cpu;
  Executor infer(m.graph, cpu, ExecMode::inference);
  EXPECT_THROW(infer.backward({}), std::logic_error);
  EXPECT_THROW(infer.grad(m.x_t), std::logic_error);
  Executor train(m.graph, cpu, ExecMode::training);
  EXPECT_THROW(train.grad(m.x_t), std::logic_error);  // inputs have no gradient unless asked
  EXPECT_THROW(train.write(m.x_t, std::vector<float>(3)), std::invalid_argument);
  EXPECT_THROW(m.graph.find("no_such_value"), std::out_of_range);

  GraphBuilder b;
  const ValueId x = b.input("x", Shape{1, 4, 4, 6});
  try {
    b.group_norm("bad_norm", x, GroupNormParams{4});
    FAIL() << "expected a shape error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("bad_norm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ddpm
