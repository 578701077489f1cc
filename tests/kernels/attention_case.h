// The shapes and the f64 oracle shared by the fp32 and bf16 attention kernel
// tests (test_attention.cpp, test_attention_bf16.cpp): one case's shape and
// input statistics, its gtest name, and the CPU backend's attention op run in
// f64 (forward, and backward on the kernel's own o and lse, as the engine would).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops/attention.h"
#include "kernels/attention.cuh"
#include "tests/kernels/kernel_test_util.h"
#include "tests/op_harness.h"

namespace ddpm::testing {

struct AttentionTestCase {
  int64_t n, h, w, heads, dim;
  double scale = 0;      // 0: head_dim^-1/2, the op's default
  double magnitude = 1;  // q and k are magnitude * N(0, 1) ...
  double shift = 0;      // ... + shift and - shift: every score near -scale shift^2 D

  int64_t tokens() const { return h * w; }
  size_t numel() const { return size_t(n * h * w * heads * dim); }
  size_t lse_numel() const { return size_t(n * heads * h * w); }
  kernels::AttentionShape shape() const { return {n, h * w, heads, dim}; }
  AttentionParams params() const { return {heads, dim, scale}; }
  double effective_scale() const { return attention_scale(params()); }
};

inline std::string case_name(const AttentionTestCase& c) {
  std::string s = "n" + std::to_string(c.n) + "_" + std::to_string(c.h) + "x" +
                  std::to_string(c.w) + "_heads" + std::to_string(c.heads) + "_d" +
                  std::to_string(c.dim);
  if (c.scale != 0) s += "_scale" + std::to_string(int(c.scale * 100)) + "pct";
  if (c.magnitude != 1) s += "_magnitude" + std::to_string(int(c.magnitude));
  if (c.shift != 0) s += "_shift" + std::to_string(int(c.shift));
  return s;
}

// gtest prints a failing case's parameter with this.
inline void PrintTo(const AttentionTestCase& c, std::ostream* os) {
  *os << case_name(c);
}

inline void set_all(HostTensor& t, const std::vector<double>& v) {
  for (size_t i = 0; i < v.size(); ++i) t.set(int64_t(i), v[i]);
}

inline std::vector<double> get_all(const HostTensor& t) {
  std::vector<double> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get(int64_t(i));
  return v;
}

struct AttentionOracle {
  std::vector<double> o, lse, dq, dk, dv;
};

// The CPU op in f64 on the (exactly widened) inputs: its forward, and its
// backward on the kernel's o and lse.
inline AttentionOracle attention_reference(const AttentionTestCase& c, const std::vector<double>& q,
                                           const std::vector<double>& k,
                                           const std::vector<double>& v,
                                           const std::vector<double>& dout,
                                           const std::vector<double>& kernel_o,
                                           const std::vector<double>& kernel_lse) {
  const Shape x{c.n, c.h, c.w, c.heads * c.dim};
  OpRun op(c.params(), {x, x, x}, DType::f64);
  set_all(op.inputs[0], q);
  set_all(op.inputs[1], k);
  set_all(op.inputs[2], v);
  AttentionOracle r;
  r.o = op.forward(0);
  r.lse = get_all(op.outputs[1]);
  set_all(op.outputs[0], kernel_o);
  set_all(op.outputs[1], kernel_lse);
  const auto grads = op.backward({dout, {}});
  r.dq = grads[0];
  r.dk = grads[1];
  r.dv = grads[2];
  return r;
}

// The argument checks every attention forward makes: forward(shape, scale)
// throws std::invalid_argument for each bad shape or scale, and for head_dim
// 300 with a message naming `who` (the function) and head_dim.
template <typename F>
void expect_rejects_bad_shapes(F&& forward, const char* who) {
  using S = kernels::AttentionShape;
  EXPECT_THROW(forward(S{1, 4, 1, 0}, 0.5f), std::invalid_argument);    // head_dim 0
  EXPECT_THROW(forward(S{1, 4, 1, 257}, 0.5f), std::invalid_argument);  // head_dim over 256
  EXPECT_THROW(forward(S{1, 0, 1, 8}, 0.5f), std::invalid_argument);    // no tokens
  EXPECT_THROW(forward(S{1, 4, 0, 8}, 0.5f), std::invalid_argument);    // no heads
  EXPECT_THROW(forward(S{-1, 4, 1, 8}, 0.5f), std::invalid_argument);
  EXPECT_THROW(forward(S{1 << 20, 1 << 10, 1, 8}, 0.5f), std::invalid_argument);  // 2^33 elements
  EXPECT_THROW(forward(S{1, 4, 1, 8}, 0.0f), std::invalid_argument);
  EXPECT_THROW(forward(S{1, 4, 1, 8}, NAN), std::invalid_argument);
  EXPECT_THROW(forward(S{1, 4, 1, 8}, INFINITY), std::invalid_argument);
  expect_invalid_argument(who, "head_dim", [&] { forward(S{1, 4, 1, 300}, 0.5f); });
}

}  // namespace ddpm::testing
