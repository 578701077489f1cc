#include "op_harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace ddpm::testing {

HostTensor::HostTensor(Shape s, DType t) : shape(s), dtype(t) {
  const auto n = static_cast<size_t>(s.numel());
  if (t == DType::f64)
    f64.assign(n, std::numeric_limits<double>::quiet_NaN());
  else
    f32.assign(n, std::numeric_limits<float>::quiet_NaN());
}

Tensor HostTensor::view() {
  void* p = dtype == DType::f64 ? static_cast<void*>(f64.data()) : static_cast<void*>(f32.data());
  return Tensor{p, shape, dtype, Device::cpu};
}

double HostTensor::get(int64_t i) const {
  return dtype == DType::f64 ? f64[size_t(i)] : double(f32[size_t(i)]);
}

void HostTensor::set(int64_t i, double v) {
  if (dtype == DType::f64)
    f64[size_t(i)] = v;
  else
    f32[size_t(i)] = float(v);
}

OpRun::OpRun(OpParams params, std::vector<Shape> input_shapes, DType dtype) {
  node.name = "op_under_test";
  node.params = std::move(params);
  node.signature = op_signature(node.params, input_shapes);
  for (const Shape& s : input_shapes) inputs.emplace_back(s, dtype);
  for (const Shape& s : node.signature.outputs) outputs.emplace_back(s, dtype);
}

void OpRun::randomize(uint64_t seed, const std::function<double(Philox&, int)>& gen) {
  for (size_t i = 0; i < inputs.size(); ++i) {
    Philox rng(seed, i);
    for (int64_t e = 0; e < inputs[i].numel(); ++e)
      inputs[i].set(e, gen ? gen(rng, int(i)) : rng.normal());
  }
}

std::vector<double> OpRun::forward(int output) {
  std::vector<Tensor> in, out;
  for (HostTensor& t : inputs) in.push_back(t.view());
  for (HostTensor& t : outputs) out.push_back(t.view());
  backend.forward(node, ForwardArgs{in, out, ctx});
  std::vector<double> y(size_t(outputs[size_t(output)].numel()));
  for (size_t i = 0; i < y.size(); ++i) y[i] = outputs[size_t(output)].get(int64_t(i));
  return y;
}

std::vector<std::vector<double>> OpRun::backward(
    const std::vector<std::vector<double>>& grad_outputs, bool accumulate, double prefill) {
  const OpSignature& sig = node.signature;
  std::vector<Tensor> in, out, gout;
  std::vector<HostTensor> gout_store, gin_store;
  // Only what the signature says backward reads is passed, as the executor does.
  for (size_t i = 0; i < inputs.size(); ++i) {
    Tensor t = inputs[i].view();
    if (!(sig.saved_inputs & bit(int(i)))) t.data = nullptr;
    in.push_back(t);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor t = outputs[i].view();
    if (!(sig.saved_outputs & bit(int(i)))) t.data = nullptr;
    out.push_back(t);
    gout_store.emplace_back(outputs[i].shape, outputs[i].dtype);
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor t = gout_store[i].view();
    if (sig.nondiff_outputs & bit(int(i))) {
      t.data = nullptr;
    } else {
      for (int64_t e = 0; e < t.numel(); ++e) gout_store[i].set(e, grad_outputs[i][size_t(e)]);
    }
    gout.push_back(t);
  }
  std::vector<GradTensor> gin;
  for (const HostTensor& x : inputs) {
    gin_store.emplace_back(x.shape, x.dtype);
    if (accumulate)
      for (int64_t e = 0; e < x.numel(); ++e) gin_store.back().set(e, prefill);
  }
  for (HostTensor& g : gin_store) gin.push_back(GradTensor{g.view(), accumulate});
  backend.backward(node, BackwardArgs{in, out, gout, gin, ctx});
  std::vector<std::vector<double>> result;
  for (const HostTensor& g : gin_store) {
    std::vector<double> v(size_t(g.numel()));
    for (size_t e = 0; e < v.size(); ++e) v[e] = g.get(int64_t(e));
    result.push_back(std::move(v));
  }
  return result;
}

void check_gradients(const OpParams& params, std::vector<Shape> input_shapes,
                     const GradCheckOptions& o) {
  OpRun run(params, input_shapes, DType::f64);
  run.randomize(o.seed, o.gen);
  run.forward();
  const OpSignature& sig = run.node.signature;

  std::vector<std::vector<double>> r(run.outputs.size());
  for (size_t i = 0; i < r.size(); ++i) {
    Philox rng(o.seed + 1000, i);
    r[i].resize(size_t(run.outputs[i].numel()));
    if (!(sig.nondiff_outputs & bit(int(i))))
      for (double& x : r[i]) x = rng.normal();
  }
  auto loss = [&]() {
    double l = 0;
    for (size_t i = 0; i < r.size(); ++i) {
      if (sig.nondiff_outputs & bit(int(i))) continue;
      const std::vector<double> y = run.forward(int(i));
      for (size_t e = 0; e < y.size(); ++e) l += r[i][e] * y[e];
    }
    return l;
  };

  const auto analytic = run.backward(r, false);
  const double prefill = 0.375;
  const auto accumulated = run.backward(r, true, prefill);
  const char* name = op_name(params);
  for (size_t i = 0; i < run.inputs.size(); ++i) {
    if (std::find(o.skip_inputs.begin(), o.skip_inputs.end(), int(i)) != o.skip_inputs.end())
      continue;
    HostTensor& x = run.inputs[i];
    const int64_t n = x.numel();
    const int64_t count = std::min<int64_t>(n, o.max_elements_per_input);
    Philox pick(o.seed + 77, i);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t e = count == n ? k : int64_t(pick.below(uint64_t(n)));
      const double x0 = x.get(e);
      x.set(e, x0 + o.step);
      const double lp = loss();
      x.set(e, x0 - o.step);
      const double lm = loss();
      x.set(e, x0);
      const double numeric = (lp - lm) / (2 * o.step);
      const double got = analytic[i][size_t(e)];
      const double tol = o.tolerance * (1 + std::abs(numeric));
      ASSERT_NEAR(got, numeric, tol)
          << name << ": d/d input " << i << " element " << e << " (overwrite mode)";
      ASSERT_NEAR(accumulated[i][size_t(e)] - prefill, numeric, tol)
          << name << ": d/d input " << i << " element " << e << " (accumulate mode)";
    }
    // Every element must have been written in overwrite mode (buffers start NaN).
    for (int64_t e = 0; e < n; ++e)
      ASSERT_TRUE(std::isfinite(analytic[i][size_t(e)]))
          << name << ": gradient of input " << i << " element " << e << " not written";
  }
  run.forward();
}

}  // namespace ddpm::testing
