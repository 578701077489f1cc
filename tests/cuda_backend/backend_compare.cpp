#include "tests/cuda_backend/backend_compare.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/checkpoint/half_float.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/executor.h"
#include "engine/random.h"

namespace ddpm::testing {

namespace {

constexpr double kUnitRoundoff = 5.960464477539063e-08;  // 2^-24

// The values the three runs share: f32-rounded, kept in double.
std::vector<double> rounded_to_float(std::vector<double> v) {
  for (double& x : v) x = double(float(x));
  return v;
}

std::vector<double> normal_draws(int64_t n, uint64_t seed, uint64_t stream, double scale) {
  Philox rng(seed, stream);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = scale * rng.normal();
  return v;
}

TensorComparison compare(const std::string& what, const std::vector<double>& exact,
                         const std::vector<float>& cpu, const std::vector<float>& cuda,
                         double factor) {
  TensorComparison c;
  c.what = what;
  EXPECT_EQ(cuda.size(), exact.size()) << what;
  EXPECT_EQ(cpu.size(), exact.size()) << what;
  if (cuda.size() != exact.size() || cpu.size() != exact.size()) return c;
  double scale = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    scale = std::max(scale, std::abs(exact[i]));
    c.cpu_error = std::max(c.cpu_error, std::abs(double(cpu[i]) - exact[i]));
    const double e = std::abs(double(cuda[i]) - exact[i]);
    if (!std::isfinite(cuda[i]) || e > c.cuda_error) {
      c.cuda_error = std::isfinite(cuda[i]) ? e : INFINITY;
      c.worst = int64_t(i);
      if (!std::isfinite(cuda[i])) break;
    }
  }
  c.bound = factor * std::max(c.cpu_error, 4 * kUnitRoundoff * scale);
  EXPECT_LE(c.cuda_error, c.bound)
      << what << ": CUDA error " << c.cuda_error << " at element " << c.worst << " (CUDA "
      << (c.worst >= 0 ? cuda[size_t(c.worst)] : 0.0f) << ", exact "
      << (c.worst >= 0 ? exact[size_t(c.worst)] : 0.0) << "), CPU f32 error " << c.cpu_error
      << ", largest |value| " << scale;
  return c;
}

}  // namespace

std::vector<TensorComparison> compare_backends(const std::function<Graph(DType)>& build,
                                               const CompareOptions& o) {
  const Graph g32 = build(DType::f32), g64 = build(DType::f64);
  const Graph gcuda = o.build_cuda ? o.build_cuda() : build(DType::f32);
  EXPECT_EQ(gcuda.values.size(), g32.values.size());
  if (gcuda.values.size() != g32.values.size()) return {};
  EXPECT_EQ(g32.values.size(), g64.values.size());
  if (g32.values.size() != g64.values.size()) return {};
  CpuBackend cpu;
  CudaBackend gpu(o.cuda);
  Executor e64(g64, cpu, o.mode), e32(g32, cpu, o.mode), ecuda(gcuda, gpu, o.mode);
  Executor* const all[] = {&e64, &e32, &ecuda};
  auto write_all = [&](ValueId v, std::vector<double> values) {
    const Value& val = gcuda.values[size_t(v)];
    if (val.dtype == DType::bf16)
      for (double& x : values) x = double(bf16_bits_to_f32(f32_to_bf16_bits(float(x))));
    e64.write(v, values);
    e32.write(v, std::vector<float>(values.begin(), values.end()));
    ecuda.write(v, std::vector<float>(values.begin(), values.end()));
  };

  // Parameters: their initialisation, with constant ones (GroupNorm's 1 and
  // 0) perturbed so that every term of every rule is exercised.
  e32.init_parameters(o.seed);
  for (ValueId p : g32.parameters()) {
    const Value& val = g32.values[size_t(p)];
    std::vector<double> v = e32.read<double>(e32.value(p));
    if (val.init.kind == ParamInit::Kind::constant) {
      const std::vector<double> noise = normal_draws(val.shape.numel(), o.seed, 2000 + p, 0.2);
      for (size_t i = 0; i < v.size(); ++i) v[i] += noise[i];
    }
    write_all(p, rounded_to_float(std::move(v)));
  }
  for (ValueId in : g32.inputs()) {
    const Value& val = g32.values[size_t(in)];
    std::vector<double> v;
    if (o.input_values) v = o.input_values(val.name, val.shape.numel());
    if (v.empty()) v = normal_draws(val.shape.numel(), o.seed, 1000 + in, 1.0);
    write_all(in, rounded_to_float(std::move(v)));
  }

  const bool verbose = std::getenv("DDPM_COMPARE_VERBOSE") != nullptr;
  std::vector<TensorComparison> result;
  auto check = [&](const std::string& what, auto tensor_of) {
    TensorComparison c =
        compare(what, e64.read<double>(tensor_of(e64)), e32.read<float>(tensor_of(e32)),
                ecuda.read<float>(tensor_of(ecuda)), o.factor);
    if (verbose)
      std::printf("  %-52s cuda %.3g  cpu32 %.3g  bound %.3g  (%.2f of bound)\n", c.what.c_str(),
                  c.cuda_error, c.cpu_error, c.bound, c.bound > 0 ? c.cuda_error / c.bound : 0);
    result.push_back(std::move(c));
  };

  for (int round = 0; round < o.rounds; ++round) {
    result.clear();
    RunContext ctx = o.ctx;
    ctx.step += uint64_t(round);  // a fresh dropout mask each round
    for (Executor* e : all) e->forward(ctx);
    for (size_t v = 0; v < g32.values.size(); ++v) {
      if (!g32.values[v].is_output) continue;
      check("output " + g32.values[v].name, [&](const Executor& e) { return e.value(ValueId(v)); });
    }
    if (o.mode != ExecMode::training) continue;
    for (Executor* e : all) e->backward(ctx);
    for (ValueId p : g32.parameters()) {
      if (!g32.values[size_t(p)].requires_grad) continue;
      check("gradient " + g32.values[size_t(p)].name, [&](const Executor& e) { return e.grad(p); });
    }
    for (ValueId in : g32.inputs()) {
      if (!e32.plan().backward.needs_grad[size_t(in)]) continue;
      check("gradient " + g32.values[size_t(in)].name,
            [&](const Executor& e) { return e.grad(in); });
    }
  }
  return result;
}

}  // namespace ddpm::testing
