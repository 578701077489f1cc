// Runs one graph through the executor on the CUDA backend and on the CPU
// backend, and compares what the caller can read: the outputs and loss after
// forward, every parameter gradient and every input gradient after backward.
//
// The same graph is built three times: f32 on the CUDA backend, f32 and f64
// on the CPU backend, all from the same f32-rounded parameters and inputs
// (the f64 graph then computes the exact result of those numbers, up to
// ~1e-16). Dropout masks are the same on all three (the same Philox keying).
//
// Tolerance, per tensor, in the max norm:
//   max_i |cuda_i - f64_i|  <=  F * max( max_i |cpu32_i - f64_i| ,  4 u max_i |f64_i| )
// with u = 2^-24. Both backends compute every op in fp32 with the same
// accuracy class (fp32 products, sums of the same K terms in different orders
// or block splits, the same transcendental functions), so their error against
// the exact result is of the same size; the CPU backend's measured error is
// the scale that the graph's conditioning gives to fp32 rounding, tensor by
// tensor (a gradient that cancels heavily gets a larger bound, a well-
// conditioned output a tight one). F covers different summation orders and
// split points (an error sum of K terms of random sign grows like sqrt(K) for
// either, with order-dependent constants). Measured under the emulator over
// every tensor of these tests (run with DDPM_COMPARE_VERBOSE=1), the CUDA error
// is at most 4.8x the CPU's, so F = 16 leaves 3x for the GPU's FMA
// contractions and other orders. The floor of 4 u |f64| keeps a tensor that
// the CPU happens to compute exactly (a copy, a concat) from demanding
// exactness of a different summation. A wrong index, a dropped term or a
// wrong mask gives errors of the size of the values themselves, 10^4 to 10^6
// times these bounds (measured with planted bugs).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/memory_plan.h"

namespace ddpm::testing {

struct CompareOptions {
  uint64_t seed = 1;            // parameters and inputs
  RunContext ctx{11, 5, true};  // dropout key; training is set from mode
  ExecMode mode = ExecMode::training;
  CudaBackendOptions cuda;  // implementations under test
  double factor = 16;       // F above
  // Values of an input by name (default: N(0, 1) draws); e.g. timesteps.
  std::function<std::vector<double>(const std::string& name, int64_t count)> input_values;
  // Forward + backward rounds with the same inputs (later rounds check that
  // nothing carries over between steps, e.g. gradients not zeroed).
  int rounds = 1;
  // The graph the CUDA backend runs instead of build(f32): the same graph
  // with bf16 activations (mixed precision). Its bf16 inputs and the
  // parameters it reads in bf16 are rounded to bf16 for all three runs, so
  // the reference computes from the numbers the CUDA run reads.
  std::function<Graph()> build_cuda;
};

struct TensorComparison {
  std::string what;  // "output loss", "gradient conv1.weight", ...
  double cuda_error = 0, cpu_error = 0, bound = 0;
  int64_t worst = -1;  // element of the largest CUDA error
};

// Builds the graph with `build(dtype)`, runs it on the three backends and
// checks every comparison with gtest (EXPECT). Returns the comparisons (the
// last round's); with the environment variable DDPM_COMPARE_VERBOSE set, also
// prints each one's errors and bound.
std::vector<TensorComparison> compare_backends(const std::function<Graph(DType)>& build,
                                               const CompareOptions& options = {});

}  // namespace ddpm::testing
