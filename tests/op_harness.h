// Runs one op of the CPU backend on host tensors the test owns, so single ops
// can be checked against naive formulas and against finite differences.
#pragma once

#include <functional>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/graph.h"
#include "engine/random.h"

namespace ddpm::testing {

// Host storage for one tensor in f32 or f64.
struct HostTensor {
  Shape shape;
  DType dtype = DType::f64;
  std::vector<double> f64;
  std::vector<float> f32;

  HostTensor() = default;
  HostTensor(Shape s, DType t);
  Tensor view();
  double get(int64_t i) const;
  void set(int64_t i, double v);
  int64_t numel() const { return shape.numel(); }
};

// An op with its inputs; outputs are allocated from the signature.
class OpRun {
 public:
  OpRun(OpParams params, std::vector<Shape> input_shapes, DType dtype = DType::f64);

  // Fills input i with N(0, 1) draws (or with `gen(rng)` when given).
  void randomize(uint64_t seed, const std::function<double(Philox&, int input)>& gen = {});
  std::vector<double> forward(int output = 0);
  // grad_outputs per differentiable output (others left undefined); returns
  // one gradient vector per input. With accumulate, the gradient buffers start
  // at `prefill` and the rule must add to them.
  std::vector<std::vector<double>> backward(const std::vector<std::vector<double>>& grad_outputs,
                                            bool accumulate = false, double prefill = 0);

  Node node;
  std::vector<HostTensor> inputs, outputs;
  RunContext ctx{1234, 7, true};
  CpuBackend backend;
};

struct GradCheckOptions {
  uint64_t seed = 1;
  int max_elements_per_input = 512;  // sampled elements, all when smaller
  double step = 1e-5;
  // Central differences in double: truncation ~ step^2 |f'''| / 6 ~ 1e-11 and
  // cancellation ~ 1e-16 |L| / step ~ 1e-11 for the O(1) losses used here, so
  // 1e-6 relative leaves a wide margin yet fails for any wrong rule.
  double tolerance = 1e-6;
  std::function<double(Philox&, int input)> gen;
  std::vector<int> skip_inputs;  // inputs whose gradient is not checked
};

// Checks every input's gradient of L = sum_o <r_o, y_o> (random r over the
// differentiable outputs) against central differences, in overwrite mode with
// NaN-poisoned buffers and again in accumulate mode. Reports through gtest.
void check_gradients(const OpParams& params, std::vector<Shape> input_shapes,
                     const GradCheckOptions& options = {});

}  // namespace ddpm::testing
