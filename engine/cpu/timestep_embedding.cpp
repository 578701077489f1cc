// Sinusoidal timestep embedding on the CPU, in diffusers' order of float32
// operations (exponent = -ln(max_period) * i, divided by (half - shift), then
// exp, then t * f, then scale), so that f32 results match bit for bit where
// the libm functions agree.
#include <cmath>

#include "engine/cpu/common.h"
#include "engine/cpu/ops.h"

namespace ddpm::cpu {

namespace {

template <typename T>
T frequency(const TimestepEmbeddingParams& p, int64_t i) {
  const int64_t half = p.dim / 2;
  const T exponent = (-T(std::log(p.max_period)) * T(i)) / (T(half) - T(p.freq_shift));
  return std::exp(exponent);
}

// Column of sin(arg_i) and of cos(arg_i) in the output row.
void columns(const TimestepEmbeddingParams& p, int64_t i, int64_t& sin_col, int64_t& cos_col) {
  const int64_t half = p.dim / 2;
  sin_col = p.flip_sin_to_cos ? half + i : i;
  cos_col = p.flip_sin_to_cos ? i : half + i;
}

}  // namespace

void forward(const TimestepEmbeddingParams& p, const ForwardArgs& a) {
  dispatch_float(a.outputs[0].dtype, "timestep_embedding", [&]<typename T>() {
    const int64_t n = a.inputs[0].shape[0], half = p.dim / 2;
    const T* t = a.inputs[0].ptr<T>();
    T* y = a.outputs[0].ptr<T>();
    for (int64_t b = 0; b < n; ++b) {
      T* row = y + b * p.dim;
      for (int64_t i = 0; i < half; ++i) {
        const T arg = T(p.scale) * (t[b] * frequency<T>(p, i));
        int64_t sc, cc;
        columns(p, i, sc, cc);
        row[sc] = std::sin(arg);
        row[cc] = std::cos(arg);
      }
      if (p.dim % 2) row[p.dim - 1] = T(0);
    }
  });
}

void backward(const TimestepEmbeddingParams& p, const BackwardArgs& a) {
  dispatch_float(a.inputs[0].dtype, "timestep_embedding", [&]<typename T>() {
    T* dt = begin_grad<T>(a.grad_inputs[0]);
    if (!dt) return;
    const int64_t n = a.inputs[0].shape[0], half = p.dim / 2;
    const T* t = a.inputs[0].ptr<T>();
    const T* dy = a.grad_outputs[0].ptr<T>();
    for (int64_t b = 0; b < n; ++b) {
      const T* row = dy + b * p.dim;
      for (int64_t i = 0; i < half; ++i) {
        const T f = T(p.scale) * frequency<T>(p, i);
        const T arg = f * t[b];
        int64_t sc, cc;
        columns(p, i, sc, cc);
        dt[b] += f * (row[sc] * std::cos(arg) - row[cc] * std::sin(arg));
      }
    }
  });
}

}  // namespace ddpm::cpu
