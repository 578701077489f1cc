// The executor end to end on the CPU backend: whole-graph gradients against
// finite differences, training to a low loss, determinism and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/optimizer.h"
#include "engine/executor.h"
#include "engine/random.h"
#include "engine/tiny_denoiser.h"

namespace ddpm {
namespace {

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
