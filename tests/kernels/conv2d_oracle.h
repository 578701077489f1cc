// The CPU backend's conv2d op as the oracle of the conv2d kernel tests (all
// implementations of kernels/conv2d.cuh), in f64, plus what their tolerances
// are derived from.
//
// Tolerances. Every output element is a sum of K products (forward: K = R*S*C;
// backward-data: at most R*S*O; backward-filter: P = N*Ho*Wo) plus, for the
// forward, the bias and the residual. However a kernel orders that sum in fp32
// (one FMA chain, split-K partials added later, shuffled tree), each term
// passes through at most (terms + a few) roundings of relative size u = 2^-24,
// so |got - exact| <= (terms + 4) u sum|terms|. `magnitude` (the same op on
// |inputs|) gives sum|terms| per element exactly. The bound is loose for
// random data (errors grow like sqrt(terms) u) but one wrong term, of size
// ~ magnitude / terms, exceeds it whenever terms^2 u << 1 — true of every
// emulated case (terms <= a few thousand).
//
// tensor_core rounds each multiplicand to bf16 as it stages it; the oracle is
// then run on the rounded operands (round_to_bf16), so what is left to bound is
// the fp32 accumulation. The accumulation inside one mma instruction may be in
// a different order (covered: the bound holds for any order) and, as measured
// on NVIDIA tensor cores, may truncate rather than round to nearest, which
// doubles the per-operation error: tensor_core tests use twice the bound.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "engine/ops/conv2d.h"
#include "kernels/conv2d.cuh"
#include "tests/op_harness.h"

namespace ddpm::testing {

constexpr double kFp32Unit = 5.96e-8;  // 2^-24

inline Conv2dParams conv_params(const kernels::Conv2dShape& s) {
  Conv2dParams p;
  p.out_channels = s.out_channels;
  p.kernel_h = s.kernel_h;
  p.kernel_w = s.kernel_w;
  p.stride = s.stride;
  p.pad = {s.pad_top, s.pad_bottom, s.pad_left, s.pad_right};
  p.bias = true;
  return p;
}

// Round to nearest even at bf16 (8 significant bits), as __float2bfloat16_rn.
inline float round_to_bf16(float v) {
  if (!std::isfinite(v)) return v;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  bits &= 0xFFFF0000u;
  std::memcpy(&v, &bits, 4);
  return v;
}

inline std::vector<float> round_to_bf16(std::vector<float> v) {
  for (float& x : v) x = round_to_bf16(x);
  return v;
}

inline std::vector<float> absolute(std::vector<float> v) {
  for (float& x : v) x = std::abs(x);
  return v;
}

// Exact (f64) conv2d forward and backward of one shape. x [N,H,W,C],
// w [O,R,S,C], bias [O] (empty: zeros), dy [N,Ho,Wo,O].
struct ConvOracle {
  explicit ConvOracle(const kernels::Conv2dShape& s)
      : shape(s),
        run(conv_params(s),
            {Shape{s.batch, s.in_h, s.in_w, s.in_channels},
             Shape{s.out_channels, s.kernel_h, s.kernel_w, s.in_channels}, Shape{s.out_channels}},
            DType::f64) {}

  // conv(x, w) + bias, without a residual (the test adds it: it is exact in f64).
  std::vector<double> forward(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& bias) {
    fill(0, x);
    fill(1, w);
    fill(2, bias.empty() ? std::vector<float>(size_t(shape.out_channels), 0.f) : bias);
    return run.forward(0);
  }

  struct Grads {
    std::vector<double> dx, dw, db;
  };
  // Gradients from zero for dy at the point (x, w).
  Grads backward(const std::vector<float>& x, const std::vector<float>& w,
                 const std::vector<float>& dy) {
    forward(x, w, {});
    std::vector<double> g(dy.begin(), dy.end());
    auto grads = run.backward({g});
    return {grads[0], grads[1], grads[2]};
  }

  kernels::Conv2dShape shape;
  OpRun run;

 private:
  void fill(int input, const std::vector<float>& v) {
    HostTensor& t = run.inputs[size_t(input)];
    for (size_t i = 0; i < v.size(); ++i) t.set(int64_t(i), double(v[i]));
  }
};

// Element-wise bound (terms + 4) u * magnitude, see the top of this file.
inline std::vector<double> accumulation_bound(const std::vector<double>& magnitude, int64_t terms) {
  std::vector<double> b(magnitude.size());
  for (size_t i = 0; i < b.size(); ++i) b[i] = double(terms + 4) * kFp32Unit * magnitude[i];
  return b;
}

// An output's exact values and the bound on each element's error.
struct Expected {
  std::vector<double> value, bound;
};

// Every element finite (a NaN left from the poison means it was never
// written) and within its bound; stops after 5 failures (a wrong kernel
// would otherwise print every element).
inline void expect_within(const std::vector<float>& got, const Expected& want,
                          const std::string& what) {
  ASSERT_EQ(got.size(), want.value.size()) << what;
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    if (!std::isfinite(got[i])) {
      ADD_FAILURE() << what << ": element " << i << " not written (or not finite)";
      ++failures;
    } else if (std::abs(got[i] - want.value[i]) > want.bound[i]) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected "
                    << want.value[i] << " +- " << want.bound[i];
      ++failures;
    }
  }
}

}  // namespace ddpm::testing
